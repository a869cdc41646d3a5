"""The auth client: verifies bearer tokens with the auth service over httpx."""

from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Header, HTTPException, Request


@dataclass(frozen=True)
class Caller:
    """Who is calling, as the auth service vouches."""

    email: str
    roles: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        """Admins see every saga, not only their own."""
        return "admin" in self.roles


class AuthUnavailable(Exception):
    """The auth service did not give an answer: neither yes nor no."""


class AuthClient:
    """One reused AsyncClient with a short timeout."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        # `transport`: to reach an auth app in this process (the embedded demo).
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)

    async def verify(self, token: str) -> Caller | None:
        """The caller a token belongs to; None if the token is invalid or expired."""
        try:
            response = await self._client.post("/auth/verify", json={"token": token})
        except httpx.HTTPError as exc:
            raise AuthUnavailable(f"auth service unreachable: {type(exc).__name__}") from exc
        if response.status_code == 401:
            return None
        if response.status_code != 200:
            raise AuthUnavailable(f"auth service answered {response.status_code}")
        try:
            data = response.json()
            return Caller(email=str(data["email"]).lower(), roles=tuple(data["roles"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise AuthUnavailable("auth service gave a malformed answer") from exc

    async def healthy(self) -> bool:
        """Whether the auth service answers its health check."""
        try:
            return (await self._client.get("/health")).status_code == 200
        except httpx.HTTPError:
            return False

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()


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
        raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from exc
    if caller is None:
        raise HTTPException(401, "invalid or expired token", headers=_UNAUTHORIZED)
    return caller
