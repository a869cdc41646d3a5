"""The auth service's HTTP API: issue tokens, verify tokens."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from redis.asyncio import Redis
from redis.exceptions import RedisError

from saga.api.media import JsonBodyRoute
from saga.api.problems import answer_without_input
from saga.auth.tokens import TokenIssuer
from saga.auth.users import UserStore
from saga.clock import utc_text
from saga.connections import redis_client
from saga.settings import Settings


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


def create_auth_app(settings: Settings, *, redis: Redis | None = None) -> FastAPI:
    """The auth service, wired from settings, or on the Redis the caller gives (and closes)."""
    own_redis = redis is None
    redis = redis_client(settings) if redis is None else redis
    users = UserStore(redis, settings.namespace)
    state: dict[str, TokenIssuer] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        secret = (
            settings.auth_secret.get_secret_value()
            if settings.auth_secret
            else await users.secret()
        )
        state["issuer"] = TokenIssuer(
            secret,
            issuer=f"saga-auth:{settings.namespace}",
            ttl=timedelta(seconds=settings.token_ttl),
        )
        yield
        if own_redis:
            await redis.aclose()

    app = FastAPI(title="saga auth", version="0.1.0", lifespan=lifespan)
    app.router.route_class = JsonBodyRoute
    answer_without_input(app)

    @app.exception_handler(RedisError)
    async def redis_down(_: object, exc: RedisError) -> JSONResponse:
        return JSONResponse({"detail": f"user store unavailable: {type(exc).__name__}"}, 503)

    @app.post("/auth/token", response_model=TokenResponse)
    async def token(body: TokenRequest) -> TokenResponse:
        user = await users.authenticate(body.email, body.password)
        if user is None:
            raise HTTPException(401, "invalid email or password")
        issuer = state["issuer"]
        return TokenResponse(
            access_token=issuer.issue(user.email, user.roles, now=datetime.now(UTC)),
            expires_in=int(issuer.ttl.total_seconds()),
        )

    @app.post("/auth/verify", response_model=VerifyResponse)
    async def verify(body: VerifyRequest) -> VerifyResponse:
        verified = state["issuer"].verify(body.token)
        if verified is None:
            raise HTTPException(401, "invalid or expired token")
        email, roles, expires_at = verified
        return VerifyResponse(
            email=email, roles=roles, expires_at=utc_text(datetime.fromtimestamp(expires_at, UTC))
        )

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
