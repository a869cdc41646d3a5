"""Wait for a condition instead of sleeping a fixed time."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    *,
    until: Callable[[T], bool] = bool,
    within: float = 15.0,
    every: float = 0.05,
    what: str = "the condition",
) -> T:
    """Poll `probe` until `until(value)` holds; fail with the last value after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {within}s; last value: {value!r}")
        await asyncio.sleep(every)


def eventually_sync(
    probe: Callable[[], T],
    *,
    until: Callable[[T], bool] = bool,
    within: float = 15.0,
    every: float = 0.05,
    what: str = "the condition",
) -> T:
    """`eventually` for a probe that is not async (an HTTP call with httpx, a CLI run)."""
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {within}s; last value: {value!r}")
        time.sleep(every)
