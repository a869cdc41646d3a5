"""A circuit breaker: after repeated failures, fail at once for a while instead of waiting."""

import time
from collections.abc import Callable
from typing import Literal


class CircuitOpen(Exception):
    """The dependency failed repeatedly; calls are refused until `retry_after` passes."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"circuit open; retry in {retry_after:.1f}s")
        self.retry_after = retry_after


class CircuitBreaker:
    """Closed: calls go through. `threshold` failures in a row open it for `reset_after`
    seconds, during which calls are refused at once; then one trial call is let through
    (half-open): its success closes the circuit, its failure opens it again."""

    def __init__(
        self,
        *,
        threshold: int,
        reset_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._reset_after = reset_after
        self._clock = clock
        self._failures = 0
        self._opened_at = 0.0
        self.state: Literal["closed", "open", "half-open"] = "closed"

    def before_call(self) -> None:
        """Raise CircuitOpen unless a call may go through now."""
        if self.state == "closed":
            return
        waited = self._clock() - self._opened_at
        if self.state == "open" and waited >= self._reset_after:
            self.state = "half-open"  # this caller makes the trial call
            return
        raise CircuitOpen(max(self._reset_after - waited, 0.1))

    def succeeded(self) -> None:
        """The call worked: close the circuit."""
        self._failures = 0
        self.state = "closed"

    def failed(self) -> None:
        """The call failed: count it, and open the circuit past the threshold."""
        self._failures += 1
        if self.state == "half-open" or self._failures >= self._threshold:
            self.state = "open"
            self._opened_at = self._clock()
