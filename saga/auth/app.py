"""The auth service's HTTP API: issue tokens (throttled), verify and revoke them."""

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated

import structlog
from fastapi import FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from saga.api.media import JsonBodyRoute
from saga.api.problems import answer_without_input
from saga.auth.addresses import client_address
from saga.auth.hashing import HashPool, HashPoolFull
from saga.auth.keys import FixedKey, KeyRing, SigningKeys
from saga.auth.metrics import SIGN_INS, read_counts
from saga.auth.revocations import Revocations
from saga.auth.throttle import SignInThrottle, ThrottlePolicy, retry_after
from saga.auth.tokens import Claims, TokenIssuer, key_id
from saga.auth.users import UserStore, dummy_hash
from saga.clock import utc_text
from saga.connections import AnyRedis, once_more, redis_client
from saga.settings import Settings, proxy_networks

log = structlog.get_logger("saga.auth")


class TokenRequest(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class VerifyRequest(BaseModel):
    token: str = Field(min_length=1, max_length=8192)


class VerifyResponse(BaseModel):
    email: str
    roles: list[str]
    expires_at: str  # ISO 8601 in UTC, ending in Z, as the API writes times


class RevokeRequest(BaseModel):
    # Unset: the token the request is made with. An email: every token of that user
    # (an admin's, or the user's own).
    email: str | None = Field(default=None, min_length=3, max_length=320)


class RevokeResponse(BaseModel):
    revoked: str  # "token" or "all"
    email: str


_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


def create_auth_app(settings: Settings, *, redis: AnyRedis | None = None) -> FastAPI:
    """The auth service, wired from settings, or on the Redis the caller gives (and closes)."""
    own_redis = redis is None
    redis = redis_client(settings) if redis is None else redis
    namespace = settings.namespace
    users = UserStore(redis, namespace)
    throttle = SignInThrottle(redis, namespace, ThrottlePolicy.from_settings(settings))
    revocations = Revocations(redis, namespace)
    ring = KeyRing(redis, namespace)
    keys: SigningKeys = (
        FixedKey(settings.auth_secret.get_secret_value()) if settings.auth_secret else ring
    )
    pool = HashPool(settings.auth_hash_slots)
    issuer = TokenIssuer(issuer=f"saga-auth:{namespace}", ttl=timedelta(seconds=settings.token_ttl))
    proxies = proxy_networks(settings.auth_trusted_proxies)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.auth_secret is None:
            await ring.ensure()
        await asyncio.to_thread(dummy_hash)  # not on the first unknown account's time
        yield
        pool.close()
        if own_redis:
            await redis.aclose()

    app = FastAPI(title="saga auth", version="0.1.0", lifespan=lifespan)
    app.router.route_class = JsonBodyRoute
    answer_without_input(app)

    @app.exception_handler(RedisError)
    async def redis_down(_: object, exc: RedisError) -> JSONResponse:
        return JSONResponse({"detail": f"user store unavailable: {type(exc).__name__}"}, 503)

    def refused(
        outcome: str, status: int, detail: str, *, email: str, address: str, wait: float = 0
    ) -> HTTPException:
        """The answer to a sign-in given no token, counted and logged (never its password)."""
        SIGN_INS.labels(outcome).inc()
        log.info("sign-in", outcome=outcome, email=email, address=address, wait=wait)
        headers = {"Retry-After": retry_after(wait)} if status != 401 else None
        return HTTPException(status, detail, headers=headers)

    @app.post(
        "/auth/token",
        response_model=TokenResponse,
        responses={
            401: {"description": "wrong email or password"},
            429: {"description": "too many failed sign-ins: wait `Retry-After` seconds"},
            503: {"description": "busy: try again after `Retry-After` seconds"},
        },
    )
    async def token(body: TokenRequest, request: Request) -> TokenResponse:
        email = body.email.lower()
        peer = request.client.host if request.client else None
        address = client_address(peer, request.headers.get("x-forwarded-for"), proxies)
        wait = await throttle.wait(email, address)
        if wait > 0:
            detail = "too many failed sign-ins: try again later"
            raise refused("throttled", 429, detail, email=email, address=address, wait=wait)
        try:
            user = await users.authenticate(email, body.password, pool)
        except HashPoolFull:
            detail = "busy: too many sign-ins at once"
            raise refused("busy", 503, detail, email=email, address=address, wait=1) from None
        if user is None:
            wait = await throttle.failed(email, address)
            detail = "invalid email or password"
            raise refused("failure", 401, detail, email=email, address=address, wait=wait)
        await throttle.succeeded(email)
        SIGN_INS.labels("success").inc()
        log.info("sign-in", outcome="success", email=email, address=address)
        return TokenResponse(
            access_token=issuer.issue(
                await keys.current(),
                user.email,
                user.roles,
                now=datetime.now(UTC),
                token_id=secrets.token_urlsafe(16),
            ),
            expires_in=int(issuer.ttl.total_seconds()),
        )

    async def verified(token: str) -> Claims | None:
        # Reads only: made once more on a fresh connection if the pooled one died with a
        # Redis restart, rather than a 503 for a Redis that is back.
        return await once_more(redis, lambda: _verified(token))

    async def _verified(token: str) -> Claims | None:
        kid = key_id(token)
        secret = None if kid is None else await keys.secret(kid, now=time.time())
        claims = None if secret is None else issuer.verify(token, secret)
        if claims is None or await revocations.revoked(claims):
            return None
        return claims

    @app.post("/auth/verify", response_model=VerifyResponse)
    async def verify(body: VerifyRequest) -> VerifyResponse:
        claims = await verified(body.token)
        if claims is None:
            raise HTTPException(401, "invalid, expired or revoked token")
        return VerifyResponse(
            email=claims.email,
            roles=claims.roles,
            expires_at=utc_text(datetime.fromtimestamp(claims.expires_at, UTC)),
        )

    @app.post(
        "/auth/revoke",
        response_model=RevokeResponse,
        responses={
            401: {"description": "no valid bearer token"},
            403: {"description": "another user's tokens, and the caller is no admin"},
        },
    )
    async def revoke(
        body: RevokeRequest, authorization: Annotated[str | None, Header()] = None
    ) -> RevokeResponse:
        scheme, _, token = (authorization or "").partition(" ")
        claims = await verified(token.strip()) if scheme.lower() == "bearer" else None
        if claims is None:
            raise HTTPException(401, "invalid, expired or revoked token", headers=_UNAUTHORIZED)
        if body.email is None:
            await revocations.revoke_token(claims)
            scope, email = "token", claims.email
        else:
            email = body.email.lower()
            if email != claims.email and "admin" not in claims.roles:
                raise HTTPException(403, "only an admin revokes another user's tokens")
            await revocations.revoke_user(email, now=time.time())
            scope = "all"
        log.info("token revoked", scope=scope, email=email, by=claims.email)
        return RevokeResponse(revoked=scope, email=email)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus metrics of this process, and the namespace's counts in Redis."""
        await read_counts(redis, namespace)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
