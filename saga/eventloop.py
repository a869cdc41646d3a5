"""The event loop every process runs on: uvloop where it is installed, else asyncio's own;
and the garbage collector's settings while it runs.

The processes are bound by the Python client's CPU (framing AMQP, parsing replies,
waking tasks); uvloop does the loop's share of that work in C.
"""

import asyncio
import contextlib
import gc
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Final, Literal, TypeVar

EventLoop = Literal["auto", "uvloop", "asyncio"]
T = TypeVar("T")

# Allocations (less deallocations) of container objects between two collections of the
# youngest generation; Python's default is 700. Nearly everything a message allocates is
# freed by its reference count within the message, so the collector found little to free
# but walked the live objects of every saga in flight, and its collections took about a
# tenth of a busy process's CPU (docs/performance.md, "The collector, the first reply,
# the bench's polls").
YOUNG_THRESHOLD: Final = 10_000


def loop_factory(choice: EventLoop) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the chosen loop (None: asyncio's default); 'uvloop' requires it."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise RuntimeError("SAGA_EVENT_LOOP=uvloop, but uvloop is not installed") from None
        return None
    return uvloop.new_event_loop


def loop_name(choice: EventLoop) -> Literal["uvloop", "asyncio"]:
    """The loop that `choice` gives on this machine."""
    return "asyncio" if loop_factory(choice) is None else "uvloop"


def run(main: Coroutine[Any, Any, T], choice: EventLoop) -> T:
    """Run a coroutine to its end on a new loop of the chosen kind (asyncio.run's twin),
    with the collector set for a long-running process."""
    with collector_for_serving(), asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)


@contextlib.contextmanager
def collector_for_serving() -> Iterator[None]:
    """While a process serves: what it allocated before (the modules and what importing
    them built, pydantic's validators among them; not what its main builds after) is
    never scanned again (`gc.freeze`), and the youngest generation is collected every
    YOUNG_THRESHOLD allocations rather than 700. Restored after (a freeze made before is
    kept)."""
    thresholds = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    gc.collect()  # start-up's garbage, not frozen with the rest
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if not frozen_before:
            gc.unfreeze()
