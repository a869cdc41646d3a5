"""The one way a background loop runs: a round, a pause, until asked to stop."""

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress

import structlog

from saga.handling import INFRASTRUCTURE_ERRORS
from saga.transport import PUBLISH_ERRORS

log = structlog.get_logger(__name__)


async def every(
    interval: float, stop: asyncio.Event, one_round: Callable[[], Awaitable[int]], *, name: str
) -> None:
    """Run `one_round` until `stop` is set; pause `interval` after a round that did nothing.

    A round that fails is logged and tried again next time: an outage (or a refusal by
    the broker) only delays the work, and a bug shows in the logs every round instead
    of stopping the process. Each loop's work is safe to repeat.
    """
    while not stop.is_set():
        done = 0
        try:
            done = await one_round()
        except (*INFRASTRUCTURE_ERRORS, *PUBLISH_ERRORS) as exc:
            log.warning(f"{name} round failed, will retry", error=repr(exc))
        except Exception as exc:
            log.exception(f"{name} round failed", error=repr(exc))
        if done:
            continue  # more may be waiting
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
