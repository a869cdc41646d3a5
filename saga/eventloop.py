"""The event loop every process runs on: uvloop where it is installed, else asyncio's own.

The processes are bound by the Python client's CPU (framing AMQP, parsing replies,
waking tasks); uvloop does the loop's share of that work in C.
"""

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

EventLoop = Literal["auto", "uvloop", "asyncio"]
T = TypeVar("T")


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
    """Run a coroutine to its end on a new loop of the chosen kind (asyncio.run's twin)."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)
