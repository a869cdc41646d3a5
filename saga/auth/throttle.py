"""Failed sign-ins counted in Redis per account and per client address, and the wait
they impose: asked before any password is hashed, shared by every replica."""

import math
from dataclasses import dataclass

from saga.auth.names import auth_prefix
from saga.connections import AnyRedis
from saga.settings import Settings

# KEYS: per counted thing (the account, then the address), its failure count and its
# wait. ARGV: how long a count is remembered (ms), the first wait (ms), the longest wait
# (ms), then per thing the failures that start the waits. Each failure counts; from the
# threshold on, each sets a wait twice the one before, capped. Answers the longest wait
# it set (ms).
_FAILED = """
local window = tonumber(ARGV[1])
local first = tonumber(ARGV[2])
local longest = tonumber(ARGV[3])
local most = 0
for i = 1, #KEYS, 2 do
  local failures = redis.call('INCR', KEYS[i])
  redis.call('PEXPIRE', KEYS[i], window)
  local threshold = tonumber(ARGV[3 + (i + 1) / 2])
  if failures >= threshold then
    local wait = math.floor(math.min(longest, first * 2 ^ math.min(failures - threshold, 60)))
    redis.call('SET', KEYS[i + 1], '1', 'PX', wait)
    most = math.max(most, wait)
  end
end
return most
"""


@dataclass(frozen=True)
class ThrottlePolicy:
    """When failed sign-ins start to wait, and how long (seconds)."""

    account_failures: int = 5
    address_failures: int = 20
    delay: float = 1.0
    max_delay: float = 900.0
    window: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "ThrottlePolicy":
        """The policy the settings name."""
        return cls(
            account_failures=settings.auth_account_failures,
            address_failures=settings.auth_address_failures,
            delay=settings.auth_delay,
            max_delay=settings.auth_max_delay,
            window=settings.auth_failure_window,
        )


class SignInThrottle:
    def __init__(self, redis: AnyRedis, namespace: str, policy: ThrottlePolicy) -> None:
        self._redis = redis
        self._prefix = f"{auth_prefix(redis, namespace)}:throttle"
        self._policy = policy
        self._failed = redis.register_script(_FAILED)

    def _keys(self, kind: str, who: str) -> list[str]:
        return [f"{self._prefix}:{kind}:{who}:failures", f"{self._prefix}:{kind}:{who}:wait"]

    async def wait(self, email: str, address: str) -> float:
        """Seconds before this account may try again from this address (0: now)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.pttl(self._keys("account", email.lower())[1])
            pipe.pttl(self._keys("address", address)[1])
            waits = await pipe.execute()
        return max(0, *(int(w) for w in waits)) / 1000

    async def failed(self, email: str, address: str) -> float:
        """Count a failed sign-in; the seconds it makes the next try wait (0: none)."""
        policy = self._policy
        waited = await self._failed(
            keys=[*self._keys("account", email.lower()), *self._keys("address", address)],
            args=[
                _ms(policy.window),
                _ms(policy.delay),
                _ms(policy.max_delay),
                policy.account_failures,
                policy.address_failures,
            ],
        )
        return int(waited) / 1000

    async def succeeded(self, email: str) -> None:
        """A right password: the account's failures are forgotten (its address's are not)."""
        await self._redis.delete(*self._keys("account", email.lower()))


def retry_after(seconds: float) -> str:
    """A Retry-After header's value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
