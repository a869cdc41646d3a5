"""The auth service's Prometheus metrics: sign-ins and hashes counted by the process that
serves them; revocations and key rotations counted in Redis (the command line makes them
too) and read at each scrape."""

from typing import Final

from prometheus_client import Counter, Gauge

from saga.auth.names import auth_prefix
from saga.connections import AnyRedis

PASSWORD_HASHES: Final = Counter(
    "saga_auth_password_hashes_total", "Passwords hashed to check a sign-in."
)
SIGN_INS: Final = Counter(
    "saga_auth_sign_ins_total",
    "Sign-ins, by outcome: success, failure (wrong password or unknown account), "
    "throttled (429: waits after failures) or busy (503: every hashing slot taken).",
    ["outcome"],
)
REVOCATIONS: Final = Gauge(
    "saga_auth_revocations",
    "Revocations in the namespace, by scope (token: one token; all: every token of a "
    "user), from the service and the command line; every replica shows the same count.",
    ["scope"],
)
KEY_ROTATIONS: Final = Gauge(
    "saga_auth_key_rotations",
    "Signing key rotations in the namespace; every replica shows the same count.",
)

# The fields of the namespace's counts (a hash in Redis).
ROTATED: Final = "key_rotations"


def counts_key(redis: AnyRedis, namespace: str) -> str:
    """The namespace's counts of revocations and rotations."""
    return f"{auth_prefix(redis, namespace)}:counts"


def revoked(scope: str) -> str:
    """The field counting revocations of this scope."""
    return f"revocations_{scope}"


async def read_counts(redis: AnyRedis, namespace: str) -> None:
    """Set the gauges from the namespace's counts."""
    counts = await redis.hgetall(counts_key(redis, namespace))
    for scope in ("token", "all"):
        REVOCATIONS.labels(scope).set(int(counts.get(revoked(scope), 0)))
    KEY_ROTATIONS.set(int(counts.get(ROTATED, 0)))
