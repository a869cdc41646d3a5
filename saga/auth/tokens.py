"""Signed, expiring bearer tokens (JWT, HS256)."""

from datetime import datetime, timedelta

import jwt

_ALGORITHM = "HS256"


class TokenIssuer:
    def __init__(self, secret: str, *, issuer: str, ttl: timedelta) -> None:
        self._secret = secret
        self._issuer = issuer
        self.ttl = ttl

    def issue(self, email: str, roles: list[str], *, now: datetime) -> str:
        """A signed token for the user, expiring after the TTL."""
        claims = {
            "sub": email,
            "roles": roles,
            "iss": self._issuer,
            "iat": int(now.timestamp()),
            "exp": int((now + self.ttl).timestamp()),
        }
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def verify(self, token: str) -> tuple[str, list[str], int] | None:
        """(email, roles, expiry as epoch seconds) of a valid, unexpired token of ours."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                issuer=self._issuer,
                options={"require": ["sub", "exp", "iat", "iss"]},
            )
        except jwt.PyJWTError:
            return None
        roles = claims.get("roles")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            return None
        return str(claims["sub"]), roles, int(claims["exp"])
