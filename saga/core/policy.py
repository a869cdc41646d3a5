"""Retry policy as data, and the pure back-off function (randomness is passed in)."""

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class RetryPolicy:
    """How often an action is tried, and how long to wait between tries.

    Attempt n (n >= 1) is followed, if it times out or fails transiently, by a wait of
    `backoff * 2**(n-1)` seconds, capped at `max_backoff`, of which up to the fraction
    `jitter` is taken off at random so that many sagas do not retry in step.
    """

    max_attempts: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("back-off cannot be negative")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction between 0 and 1")


def backoff_delay(policy: RetryPolicy, attempt: int, rand: float) -> timedelta:
    """The wait after failed attempt `attempt`; `rand` is a uniform number in [0, 1)."""
    if attempt < 1:
        raise ValueError("attempts count from 1")
    if not 0 <= rand < 1:
        raise ValueError("rand must be in [0, 1)")
    ceiling = min(policy.max_backoff, policy.backoff * 2 ** min(attempt - 1, 62))
    return timedelta(seconds=ceiling * (1 - policy.jitter * rand))
