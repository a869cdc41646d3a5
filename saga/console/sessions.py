"""Console sessions in Redis: a random id in a cookie names the token, who signed in, and
the CSRF token of their forms; a session ends when its token expires or at sign-out."""

import json
import math
import secrets
from dataclasses import asdict, dataclass
from typing import Final

from saga.api.auth import Caller, SignedIn
from saga.connections import AnyRedis

COOKIE: Final = "saga_console"


@dataclass(frozen=True)
class Session:
    """Who signed in to the console, with their token and their forms' CSRF token."""

    session_id: str
    token: str
    email: str
    roles: tuple[str, ...]
    csrf: str

    @property
    def caller(self) -> Caller:
        """The signed-in user, as the API sees a caller."""
        return Caller(self.email, self.roles)


class SessionStore:
    """Sessions of one namespace, each kept as long as its token lives."""

    def __init__(self, redis: AnyRedis, namespace: str) -> None:
        self._redis = redis
        self._ns = namespace

    def _key(self, session_id: str) -> str:
        return f"{self._ns}:console:session:{session_id}"

    async def open(self, signed_in: SignedIn, *, now: float) -> tuple[Session, int]:
        """A new session for a token, and how many seconds it lasts (as the token)."""
        ttl = max(1, math.floor(signed_in.expires_at - now))
        session = Session(
            session_id=secrets.token_urlsafe(32),
            token=signed_in.token,
            email=signed_in.caller.email,
            roles=signed_in.caller.roles,
            csrf=secrets.token_urlsafe(32),
        )
        await self._redis.set(self._key(session.session_id), json.dumps(asdict(session)), ex=ttl)
        return session, ttl

    async def get(self, session_id: str) -> Session | None:
        """The session of a cookie's id; None if there is none (expired, ended, made up)."""
        if not 20 <= len(session_id) <= 100:
            return None
        raw = await self._redis.get(self._key(session_id))
        if raw is None:
            return None
        data = json.loads(raw)
        return Session(**{**data, "roles": tuple(data["roles"])})

    async def close(self, session_id: str) -> None:
        """End a session (sign-out)."""
        await self._redis.delete(self._key(session_id))
