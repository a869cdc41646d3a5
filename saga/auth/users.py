"""Users in Redis: email, password hash and roles."""

import asyncio
import functools
import json
import secrets
from typing import Final

from pydantic import BaseModel
from redis.asyncio import Redis

from saga.auth.passwords import hash_password, verify_password

ROLES: Final = frozenset({"customer", "admin"})


@functools.cache
def _dummy_hash() -> str:
    """Verifying against this when the user is unknown keeps both answers equally slow."""
    return hash_password(secrets.token_urlsafe(16))


class User(BaseModel):
    email: str
    roles: list[str]


class SavedUser(User):
    """A user as `add` left it, and whether `add` created it."""

    created: bool


class UserStore:
    def __init__(self, redis: "Redis", namespace: str) -> None:
        self._redis = redis
        self._prefix = f"{namespace}:auth"

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

    async def authenticate(self, email: str, password: str) -> User | None:
        """The user if the password is right; None otherwise (equally slow either way)."""
        raw = await self._redis.hgetall(self._key(email))
        stored = str(raw.get("password") or _dummy_hash())
        ok = await asyncio.to_thread(verify_password, password, stored)
        if not raw or not ok:
            return None
        return User(email=email.lower(), roles=json.loads(raw["roles"]))

    def presence_keys(self) -> list[str]:
        """Keys of which one exists once the auth service ran (unless its token key is
        set in the environment)."""
        return [self._secret_key]

    @property
    def _secret_key(self) -> str:
        return f"{self._prefix}:secret"

    async def secret(self) -> str:
        """The namespace's token key: made once, kept in Redis, shared by every replica."""
        key = self._secret_key
        await self._redis.set(key, secrets.token_urlsafe(48), nx=True)
        value = await self._redis.get(key)
        assert value is not None
        return str(value)
