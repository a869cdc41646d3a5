"""Revoked tokens in Redis: one token by its id until it would have expired, or every
token of a user issued up to a moment (their "not before")."""

from typing import Final

from saga.auth.metrics import counts_key, revoked
from saga.auth.names import auth_prefix
from saga.auth.tokens import Claims
from saga.connections import AnyRedis
from saga.settings import MAX_TOKEN_TTL

# A user's "not before" outlives any token issued before it.
_NOT_BEFORE_KEPT: Final = MAX_TOKEN_TTL + 3600


class Revocations:
    def __init__(self, redis: AnyRedis, namespace: str) -> None:
        self._redis = redis
        self._prefix = f"{auth_prefix(redis, namespace)}:revoked"
        self._counts = counts_key(redis, namespace)

    def _token_key(self, token_id: str) -> str:
        return f"{self._prefix}:token:{token_id}"

    def _user_key(self, email: str) -> str:
        return f"{self._prefix}:user:{email.lower()}"

    async def revoke_token(self, claims: Claims) -> None:
        """Refuse this token from now on (remembered until it would have expired)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._token_key(claims.token_id), "1", exat=claims.expires_at + 1)
            pipe.hincrby(self._counts, revoked("token"), 1)
            await pipe.execute()

    async def revoke_user(self, email: str, *, now: float) -> None:
        """Refuse every token of this user issued up to now (in this second too: a token's
        time is in whole seconds)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._user_key(email), str(int(now)), ex=_NOT_BEFORE_KEPT)
            pipe.hincrby(self._counts, revoked("all"), 1)
            await pipe.execute()

    async def revoked(self, claims: Claims) -> bool:
        """Whether the token was revoked, by itself or with all of its user's."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.exists(self._token_key(claims.token_id))
            pipe.get(self._user_key(claims.email))
            one, up_to = await pipe.execute()
        return bool(one) or (up_to is not None and claims.issued_at <= int(up_to))
