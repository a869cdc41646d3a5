"""Retention: completed and compensated sagas are deleted once they are old enough.

A saga that ended well is kept for `SAGA_RETENTION` (for `saga show`, the API, and
whoever asks what happened), then trimmed with its index entries, so that Redis holds
the recent past and the present, not all of history. Failed sagas are never trimmed:
they wait for an operator. Any orchestrator may trim; two trimming at once is harmless.
"""

import asyncio

import structlog

from saga.clock import Clock, utc_now
from saga.loops import every
from saga.store import RedisSagaStore

log = structlog.get_logger(__name__)


class Trimmer:
    """Deletes ended sagas older than the retention, a batch at a time."""

    def __init__(
        self,
        store: RedisSagaStore,
        *,
        retention: float,
        interval: float,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._retention = retention
        self._interval = interval
        self._clock = clock

    async def run_once(self, *, limit: int = 500) -> int:
        """Trim up to `limit` sagas past the retention; returns how many."""
        cutoff = self._clock().timestamp() - self._retention
        ids = await self._store.ended_before(cutoff, limit)
        if ids:
            await self._store.trim(ids)
            log.info("sagas trimmed", count=len(ids), retention_s=self._retention)
        return len(ids)

    async def run(self, stop: asyncio.Event) -> None:
        """Trim until `stop` is set, a batch after another while any is due; a failed
        round only delays the next."""
        await every(self._interval, stop, self.run_once, name="retention")


def trim_interval(retention: float) -> float:
    """How often to look: a tenth of the retention, between a second and a minute."""
    return min(60.0, max(1.0, retention / 10))
