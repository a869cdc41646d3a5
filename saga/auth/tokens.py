"""Signed, expiring bearer tokens (JWT, HS256): each carries an id (`jti`) to be revoked
by, and names the key that signed it (`kid`)."""

from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

_ALGORITHM = "HS256"


@dataclass(frozen=True)
class Claims:
    """What a verified token says."""

    email: str
    roles: list[str]
    token_id: str
    issued_at: int  # seconds since the epoch
    expires_at: int


class TokenIssuer:
    def __init__(self, *, issuer: str, ttl: timedelta) -> None:
        self._issuer = issuer
        self.ttl = ttl

    def issue(
        self, key: tuple[str, str], email: str, roles: list[str], *, now: datetime, token_id: str
    ) -> str:
        """A token for the user signed with `key` (kid, secret), expiring after the TTL."""
        kid, secret = key
        claims = {
            "sub": email,
            "roles": roles,
            "iss": self._issuer,
            "iat": int(now.timestamp()),
            "exp": int((now + self.ttl).timestamp()),
            "jti": token_id,
        }
        return jwt.encode(claims, secret, algorithm=_ALGORITHM, headers={"kid": kid})

    def verify(self, token: str, secret: str) -> Claims | None:
        """The claims of a valid, unexpired token of ours signed with `secret`."""
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=[_ALGORITHM],
                issuer=self._issuer,
                options={"require": ["sub", "exp", "iat", "iss", "jti"]},
            )
        except jwt.PyJWTError:
            return None
        roles = claims.get("roles")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            return None
        return Claims(
            email=str(claims["sub"]),
            roles=roles,
            token_id=str(claims["jti"]),
            issued_at=int(claims["iat"]),
            expires_at=int(claims["exp"]),
        )


def key_id(token: str) -> str | None:
    """The `kid` a token names (not verified: it says which key to verify it with)."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        return None
    return kid if isinstance(kid, str) else None
