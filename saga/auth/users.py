"""Users in Redis: email, password hash and roles."""

import asyncio
import functools
import json
import secrets
from typing import Final

from pydantic import BaseModel

from saga.auth.hashing import HashPool
from saga.auth.names import auth_prefix
from saga.auth.passwords import hash_password, verify_password
from saga.connections import AnyRedis

ROLES: Final = frozenset({"customer", "admin"})


@functools.cache
def dummy_hash() -> str:
    """Verifying against this when the user is unknown keeps both answers equally slow
    (made once per process, before the first sign-in)."""
    return hash_password(secrets.token_urlsafe(16))


class User(BaseModel):
    email: str
    roles: list[str]


class SavedUser(User):
    """A user as `add` left it, and whether `add` created it."""

    created: bool


class UserStore:
    def __init__(self, redis: AnyRedis, namespace: str) -> None:
        self._redis = redis
        self._prefix = auth_prefix(redis, namespace)

    def _key(self, email: str) -> str:
        return f"{self._prefix}:user:{email.lower()}"

    async def add(self, email: str, password: str, roles: list[str] | None) -> "SavedUser":
        """Create the user, or set its password. Its roles become exactly `roles` (and
        customer); with None, a new user is a customer and an existing one keeps its own."""
        unknown = set(roles or ()) - ROLES
        if unknown:
            raise ValueError(f"unknown role(s) {sorted(unknown)}; known: {sorted(ROLES)}")
        hashed = await asyncio.to_thread(hash_password, password)
        key = self._key(email)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.exists(key)
            pipe.hset(key, "password", hashed)
            if roles is None:
                pipe.hsetnx(key, "roles", json.dumps(["customer"]))
            else:
                pipe.hset(key, "roles", json.dumps(sorted({"customer", *roles})))
            pipe.hget(key, "roles")
            existed, *_, stored = await pipe.execute()
        return SavedUser(email=email.lower(), roles=json.loads(stored), created=not existed)

    async def get(self, email: str) -> User | None:
        """The user, or None."""
        raw = await self._redis.hgetall(self._key(email))
        return User(email=email.lower(), roles=json.loads(raw["roles"])) if raw else None

    async def authenticate(self, email: str, password: str, pool: HashPool) -> User | None:
        """The user if the password is right; None otherwise (equally slow either way:
        an unknown account's is checked against a dummy hash). HashPoolFull if `pool`
        has no free slot."""
        raw = await self._redis.hgetall(self._key(email))
        stored = raw.get("password")
        ok = await pool.run(lambda: verify_password(password, str(stored or dummy_hash())))
        if not raw or not ok:
            return None
        return User(email=email.lower(), roles=json.loads(raw["roles"]))
