"""Password hashing on a bounded pool of threads: when every slot is busy, a sign-in is
refused at once rather than queueing CPU work behind a flood."""

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from saga.auth.metrics import PASSWORD_HASHES

T = TypeVar("T")


class HashPoolFull(Exception):
    """Every hashing slot is busy."""


class HashPool:
    def __init__(self, slots: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="hash")
        self._free = asyncio.Semaphore(slots)

    @property
    def full(self) -> bool:
        """Whether every slot is busy."""
        return self._free.locked()

    async def run(self, hashing: Callable[[], T]) -> T:
        """`hashing` on a free slot, or HashPoolFull at once."""
        if self.full:
            raise HashPoolFull
        async with self._free:
            PASSWORD_HASHES.inc()
            return await asyncio.get_running_loop().run_in_executor(self._executor, hashing)

    def close(self) -> None:
        """Stop the threads (after the hashes under way)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
