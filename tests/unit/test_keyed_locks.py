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
    assert locks._waiting == {}


async def test_different_keys_do_not_wait_for_each_other() -> None:
    locks = KeyedLocks()
    inside = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("saga1"):
            await inside.wait()

    held = asyncio.create_task(holder())
    await asyncio.sleep(0)
    async with locks.hold("saga2"):
        inside.set()
    await held


async def test_a_waiter_cancelled_while_waiting_leaves_the_queue() -> None:
    locks = KeyedLocks()
    await locks.acquire("saga1")
    waiter = asyncio.create_task(locks.acquire("saga1"))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    locks.release("saga1")
    assert locks._waiting == {}
    await asyncio.wait_for(locks.acquire("saga1"), 1)  # free again


async def test_a_waiter_cancelled_as_it_is_handed_the_lock_passes_it_on() -> None:
    locks = KeyedLocks()
    await locks.acquire("saga1")
    first = asyncio.create_task(locks.acquire("saga1"))
    second = asyncio.create_task(locks.acquire("saga1"))
    await asyncio.sleep(0)
    locks.release("saga1")  # hands it to `first`...
    first.cancel()  # ...which is cancelled before it runs again
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.wait_for(second, 1)  # so `second` gets it
    locks.release("saga1")
    assert locks._waiting == {}
