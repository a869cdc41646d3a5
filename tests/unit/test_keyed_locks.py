"""The orchestrator's per-saga locks: one holder per key, first come first served, and a
cancelled waiter never keeps the lock from the next."""

import asyncio

from saga.orchestrator import KeyedLocks


async def test_one_key_is_held_by_one_task_at_a_time_in_arrival_order() -> None:
    locks, order = KeyedLocks(), []

    async def work(name: str) -> None:
        async with locks.hold("saga1"):
            order.append(f"{name} in")
            await asyncio.sleep(0.01)
            order.append(f"{name} out")

    await asyncio.gather(work("a"), work("b"), work("c"))
    assert order == ["a in", "a out", "b in", "b out", "c in", "c out"]
    assert locks._locks == {}


async def test_different_keys_do_not_wait_for_each_other() -> None:
    locks = KeyedLocks()
    inside = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("saga1"):
            await inside.wait()

    held = asyncio.create_task(holder())
    await asyncio.sleep(0)
    async with asyncio.timeout(1):  # fails, rather than hangs, if saga2 waited for saga1
        async with locks.hold("saga2"):
            inside.set()
        await held


async def test_a_cancelled_waiter_neither_holds_nor_blocks_the_key() -> None:
    locks = KeyedLocks()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("saga1"):
            await release.wait()

    async def waiter() -> None:
        async with locks.hold("saga1"):
            raise AssertionError("a cancelled waiter must not get the lock")

    held = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiting = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    waiting.cancel()
    release.set()  # the holder lets go in the same turn as the cancel
    await asyncio.gather(held, waiting, return_exceptions=True)
    assert waiting.cancelled()
    assert locks._locks == {}
    async with asyncio.timeout(1):
        async with locks.hold("saga1"):
            pass
