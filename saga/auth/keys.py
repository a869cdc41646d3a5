"""The token signing keys: in Redis, each with an id (`kid`), one of them current, shared
by every replica; or one fixed key from the environment (SAGA_AUTH_SECRET)."""

import json
import secrets
from typing import Final, Protocol

from saga.auth.metrics import ROTATED, counts_key
from saga.auth.names import auth_prefix
from saga.connections import AnyRedis

# A rotation keeps the key it retires this long past the longest token's life: a
# replica may sign with it a moment after, and clocks differ a little.
RETIRE_GRACE: Final = 60.0
FIXED_KID: Final = "env"
# How long a replica trusts what it read of a key. A rotation marks the previous key to
# retire RETIRE_GRACE (and a token's life) later, so a replica learns of it in time.
KEY_READ_FOR: Final = RETIRE_GRACE / 2

# KEYS: the keys (a hash: kid -> {"secret", "retire_at"}), the current kid. ARGV: a
# new kid and secret. Makes them the first key unless there is a current one already.
_FIRST = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({secret = ARGV[2]}))
  redis.call('SET', KEYS[2], ARGV[1])
end
"""

# KEYS as _FIRST. Answers the current kid and its secret (false: no key yet).
_CURRENT = """
local kid = redis.call('GET', KEYS[2])
if not kid then return false end
return {kid, cjson.decode(redis.call('HGET', KEYS[1], kid)).secret}
"""

# KEYS as _FIRST, and the namespace's counts. ARGV: the new kid and secret, now, when
# the current key retires (both seconds since the epoch), the count of rotations' field. Drops the keys already retired, marks the current one to
# retire, makes the new one current. Answers the kid it retired (false: none) and those
# it dropped.
_ROTATE = """
local now = tonumber(ARGV[3])
local dropped = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local key = cjson.decode(all[i + 1])
  if key.retire_at and key.retire_at <= now then
    redis.call('HDEL', KEYS[1], all[i])
    table.insert(dropped, all[i])
  end
end
local previous = redis.call('GET', KEYS[2])
if previous then
  local key = cjson.decode(redis.call('HGET', KEYS[1], previous))
  key.retire_at = tonumber(ARGV[4])
  redis.call('HSET', KEYS[1], previous, cjson.encode(key))
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({secret = ARGV[2]}))
redis.call('SET', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[5], 1)
return {previous, dropped}
"""


class SigningKeys(Protocol):
    async def current(self) -> tuple[str, str]:
        """(kid, secret) of the key new tokens are signed with."""
        ...

    async def secret(self, kid: str, *, now: float) -> str | None:
        """The secret of a key that still verifies; None if unknown or retired."""
        ...


class FixedKey:
    """The key SAGA_AUTH_SECRET gives: one, never rotated here."""

    def __init__(self, secret: str) -> None:
        self._secret = secret

    async def current(self) -> tuple[str, str]:
        """The one key."""
        return FIXED_KID, self._secret

    async def secret(self, kid: str, *, now: float) -> str | None:
        """The one key's secret, for its own kid."""
        return self._secret if kid == FIXED_KID else None


class KeyRing:
    """The keys in Redis."""

    def __init__(self, redis: AnyRedis, namespace: str) -> None:
        self._redis = redis
        prefix = auth_prefix(redis, namespace)
        self.keys = [f"{prefix}:keys", f"{prefix}:key"]
        self._counts = counts_key(redis, namespace)
        # kid -> (secret, retire_at or None, when read): verifying asks Redis once a while.
        self._read: dict[str, tuple[str, float | None, float]] = {}
        self._first = redis.register_script(_FIRST)
        self._current = redis.register_script(_CURRENT)
        self._rotate = redis.register_script(_ROTATE)

    async def ensure(self) -> None:
        """Make the first key, unless there is one (any replica may be first)."""
        await self._first(keys=self.keys, args=_new_key())

    async def current(self) -> tuple[str, str]:
        """(kid, secret) of the current key."""
        current = await self._current(keys=self.keys)
        if not current:
            raise LookupError("no signing key yet: the auth service makes one as it starts")
        return str(current[0]), str(current[1])

    async def secret(self, kid: str, *, now: float) -> str | None:
        """The secret of a current or retiring key; None once it retired or if unknown."""
        read = self._read.get(kid)
        if read is None or now - read[2] > KEY_READ_FOR:
            raw = await self._redis.hget(self.keys[0], kid)
            if raw is None:
                return None
            key = json.loads(raw)
            read = self._read[kid] = (str(key["secret"]), key.get("retire_at"), now)
        secret, retire_at, _ = read
        return None if retire_at is not None and retire_at <= now else secret

    async def rotate(self, *, now: float, token_ttl: float) -> tuple[str, str | None, list[str]]:
        """Make a new key current; the current one verifies `token_ttl` (and a grace)
        longer. (the new kid, the retired kid or None, the kids dropped as past use)."""
        kid, secret = _new_key()
        retire_at = now + token_ttl + RETIRE_GRACE
        retired, dropped = await self._rotate(
            keys=[*self.keys, self._counts], args=[kid, secret, now, retire_at, ROTATED]
        )
        return kid, (str(retired) if retired else None), [str(d) for d in dropped]


def _new_key() -> list[str]:
    return [secrets.token_hex(8), secrets.token_urlsafe(48)]
