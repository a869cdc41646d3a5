"""The auth client: verifies bearer tokens with the auth service over httpx."""

import asyncio
import functools
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import httpx
from fastapi import Header, HTTPException, Request

from saga.breaker import CircuitBreaker, CircuitOpen
from saga.core.policy import AUTH_BREAKER_RESET_AFTER, AUTH_BREAKER_THRESHOLD

# Below the auth service's own keep-alive (uvicorn's 5 s): the client lets an idle
# connection go before the server closes it under a request.
KEEPALIVE_EXPIRY: Final = 2.0


@dataclass(frozen=True)
class Caller:
    """Who is calling, as the auth service vouches."""

    email: str
    roles: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        """Admins see every saga, not only their own."""
        return "admin" in self.roles


# The auth service's verdict on a token: its caller (None: invalid) and when it expires.
Answer = tuple[Caller | None, float]


@dataclass(frozen=True)
class SignedIn:
    """A token the auth service issued for an email and password: whose, until when."""

    token: str
    caller: Caller
    expires_at: float  # seconds since the epoch


class AuthUnavailable(Exception):
    """The auth service did not give an answer: neither yes nor no."""

    def __init__(self, message: str, *, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthClient:
    """One reused AsyncClient with a short timeout, a small cache of verified tokens, and
    a circuit breaker so that an auth outage answers 503 at once instead of piling up."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
        # A revoked token is honoured by this front door for at most this long.
        cache_ttl: float = 5.0,
        cache_size: int = 10_000,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # `transport`: to reach an auth app in this process (the embedded demo).
        # An idle connection is dropped before the auth service's server would close it
        # (uvicorn: 5 s); a request on one it closed that very moment is asked again.
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY),
        )
        self._cache: OrderedDict[str, tuple[Caller, float]] = OrderedDict()
        self._cache_ttl = cache_ttl
        self._cache_size = cache_size
        self._breaker = breaker or CircuitBreaker(
            threshold=AUTH_BREAKER_THRESHOLD,
            reset_after=AUTH_BREAKER_RESET_AFTER.total_seconds(),
        )
        self._clock = clock
        self._asking: dict[str, asyncio.Future[Answer]] = {}

    async def verify(self, token: str) -> Caller | None:
        """The caller a token belongs to; None if the token is invalid or expired."""
        now = self._clock()
        cached = self._cache.get(token)
        if cached is not None and cached[1] > now:
            self._cache.move_to_end(token)
            return cached[0]
        # Requests with one token that come together ask the auth service once.
        asking = self._asking.get(token)
        if asking is None:
            asking = self._asking[token] = asyncio.ensure_future(self._ask_guarded(token))
            asking.add_done_callback(functools.partial(self._asked, token))
        caller, expires_at = await asyncio.shield(asking)
        if caller is not None:
            # Never kept longer than the token lives.
            self._cache[token] = (caller, min(now + self._cache_ttl, expires_at))
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return caller

    def _asked(self, token: str, asking: "asyncio.Future[Answer]") -> None:
        self._asking.pop(token, None)
        if not asking.cancelled():
            asking.exception()  # retrieved, should every waiter have gone

    async def _ask_guarded(self, token: str) -> "Answer":
        """The auth service's answer, through the circuit breaker."""
        try:
            self._breaker.before_call()
        except CircuitOpen as exc:
            raise AuthUnavailable(
                "auth service unavailable (not asked: it failed repeatedly)",
                retry_after=exc.retry_after,
            ) from None
        try:
            answer = await self._ask(token)
        except AuthUnavailable:
            self._breaker.failed()
            raise
        self._breaker.succeeded()
        return answer

    async def _ask(self, token: str) -> "Answer":
        response = await self._post("/auth/verify", read_only=True, json={"token": token})
        if response.status_code == 401:
            return None, 0.0
        if response.status_code != 200:
            raise AuthUnavailable(f"auth service answered {response.status_code}")
        try:
            data = response.json()
            caller = Caller(email=str(data["email"]).lower(), roles=tuple(data["roles"]))
            return caller, _epoch(data.get("expires_at", 0))
        except (ValueError, KeyError, TypeError) as exc:
            raise AuthUnavailable("auth service gave a malformed answer") from exc

    async def _post(self, path: str, *, read_only: bool = False, **request: Any) -> httpx.Response:
        try:
            try:
                return await self._client.post(path, **request)
            except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
                if not read_only:
                    raise
                # Likely a kept-alive connection the server closed as it was reused:
                # a read is asked once more, on a fresh one.
                return await self._client.post(path, **request)
        except httpx.HTTPError as exc:
            raise AuthUnavailable(f"auth service unreachable: {type(exc).__name__}") from exc

    async def revoke(self, token: str) -> bool:
        """Revoke the token (a sign-out) and forget it here; False if the auth service
        calls it invalid, expired or already revoked. AuthUnavailable if it cannot say."""
        self._cache.pop(token, None)
        response = await self._post(
            "/auth/revoke", json={}, headers={"Authorization": f"Bearer {token}"}
        )
        if response.status_code not in (200, 401):
            raise AuthUnavailable(f"auth service answered {response.status_code}")
        return response.status_code == 200

    async def sign_in(self, email: str, password: str) -> SignedIn | None:
        """A fresh token for an email and password (as `POST /auth/token` gives one),
        with whom it names and when it expires; None if the auth service refuses them.
        Throttled (429) or busy (503), AuthUnavailable with the service's Retry-After."""
        response = await self._post("/auth/token", json={"email": email, "password": password})
        if response.status_code in (401, 422):
            return None
        if response.status_code != 200:
            raise AuthUnavailable(
                f"auth service answered {response.status_code}",
                retry_after=_retry_after(response),
            )
        try:
            token = str(response.json()["access_token"])
        except (ValueError, KeyError, TypeError) as exc:
            raise AuthUnavailable("auth service gave a malformed answer") from exc
        caller, expires_at = await self._ask(token)
        if caller is None:
            raise AuthUnavailable("auth service refused a token it had just issued")
        return SignedIn(token, caller, expires_at)

    async def healthy(self) -> bool:
        """Whether the auth service answers its health check."""
        try:
            return (await self._client.get("/health")).status_code == 200
        except httpx.HTTPError:
            return False

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()


def _epoch(expires_at: object) -> float:
    """The auth service's expiry of a token, in seconds since the epoch: it writes ISO
    8601 (`2026-11-30T09:15:02Z`); one from before wrote the seconds themselves."""
    if isinstance(expires_at, str):
        at = datetime.fromisoformat(expires_at)
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
    if isinstance(expires_at, int | float) and not isinstance(expires_at, bool):
        return float(expires_at)
    raise TypeError(f"expires_at is neither a time nor a number: {type(expires_at).__name__}")


_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


async def current_caller(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Caller:
    """FastAPI dependency: 401 without a valid token, 503 if auth cannot say."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "missing bearer token", headers=_UNAUTHORIZED)
    client: AuthClient = request.app.state.auth
    try:
        caller = await client.verify(token.strip())
    except AuthUnavailable as exc:
        wait = str(max(1, math.ceil(exc.retry_after)))
        raise HTTPException(503, str(exc), headers={"Retry-After": wait}) from exc
    if caller is None:
        raise HTTPException(401, "invalid or expired token", headers=_UNAUTHORIZED)
    return caller


def _retry_after(response: httpx.Response) -> float:
    """The answer's Retry-After in seconds (5 when it has none that reads)."""
    try:
        return max(1.0, float(response.headers.get("Retry-After", "5")))
    except ValueError:
        return 5.0
