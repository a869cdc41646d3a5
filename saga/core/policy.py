"""Retry and back-off policy as data, every default of it, and the pure back-off function
(randomness is passed in)."""

from dataclasses import dataclass
from datetime import timedelta
from typing import Final


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """How long to wait after each failed try: try n (n >= 1) is followed by a wait of
    `backoff * 2**(n-1)` seconds, capped at `max_backoff`, of which up to the fraction
    `jitter` is taken off at random so that many waiters do not try again in step."""

    backoff: float = 0.5
    max_backoff: float = 30.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("back-off cannot be negative")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction between 0 and 1")


@dataclass(frozen=True, kw_only=True)
class RetryPolicy(Backoff):
    """How often an action is tried, and how long to wait between tries."""

    max_attempts: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")


def backoff_delay(policy: Backoff, attempt: int, rand: float) -> timedelta:
    """The wait after failed try `attempt`; `rand` is a uniform number in [0, 1)."""
    if attempt < 1:
        raise ValueError("attempts count from 1")
    if not 0 <= rand < 1:
        raise ValueError("rand must be in [0, 1)")
    ceiling = min(policy.max_backoff, policy.backoff * 2 ** min(attempt - 1, 62))
    return timedelta(seconds=ceiling * (1 - policy.jitter * rand))


# The defaults, here and nowhere else: a definition document's and a definition built
# in Python, the settings that override them (docs/configuration.md), the HTTP
# participants' (docs/definitions.md) and the processes' own waits.

# How long each try of a step waits for its reply.
STEP_TIMEOUT: Final = timedelta(seconds=10)
# 3 tries, 0.5 s doubling to at most 30 s, up to half of each wait taken off at random.
STEP_RETRY: Final = RetryPolicy()
# Undoing must not give up easily: a saga that cannot be undone needs a human.
COMPENSATION_RETRY: Final = RetryPolicy(max_attempts=5)
# An HTTP participant's call: its limit, and its circuit breaker (after `threshold`
# transient failures in a row, no call for `reset_after`).
HTTP_TIMEOUT: Final = timedelta(seconds=5)
HTTP_BREAKER_THRESHOLD: Final = 5
HTTP_BREAKER_RESET_AFTER: Final = timedelta(seconds=10)
# The front door's circuit breaker on the auth service.
AUTH_BREAKER_THRESHOLD: Final = 5
AUTH_BREAKER_RESET_AFTER: Final = timedelta(seconds=5)
# A message whose handler meets a server outage is run again after these waits, for as
# long as the outage lasts.
OUTAGE_RETRY: Final = Backoff(backoff=0.1, max_backoff=5.0, jitter=0.5)
# A process reconnects to RabbitMQ every 2 s, up to half of it taken off at random, so
# that the replicas a broker restart disconnected together do not come back in step.
RECONNECT: Final = Backoff(backoff=2.0, max_backoff=2.0, jitter=0.5)
