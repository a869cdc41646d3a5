"""The outbox: publish a saga's stored commands with confirms, and relay what a crash left."""

import asyncio
from collections.abc import Sequence

import structlog
from pydantic import ValidationError

from saga.clock import Clock, marker_of, utc_now
from saga.core.decide import OutgoingCommand
from saga.loops import every
from saga.store import RedisSagaStore
from saga.transport import INFRASTRUCTURE_ERRORS, PUBLISH_ERRORS, Transport

log = structlog.get_logger(__name__)

# What can stop a publication without being the command's fault: it stays in the outbox.
DISPATCH_ERRORS = (*INFRASTRUCTURE_ERRORS, *PUBLISH_ERRORS)


class Dispatcher:
    """Publishes a saga's outgoing commands with confirms, then clears them from its outbox.

    The clearing is gathered: the outboxes of every command confirmed within
    `clear_delay` are cleared in one pipeline, not one round trip each. Until then a
    published command is still in its outbox; if the process dies meanwhile, the relay
    publishes it again after its grace period, and the participant, which has seen its
    idempotency key, answers as before.
    """

    def __init__(
        self, store: RedisSagaStore, transport: Transport, *, clear_delay: float = 0.02
    ) -> None:
        self._store = store
        self._transport = transport
        self._clear_delay = clear_delay
        self._to_clear: list[tuple[str, list[str], int]] = []
        self._clearing: asyncio.Task[None] | None = None

    async def dispatch(
        self, saga_id: str, commands: Sequence[OutgoingCommand], *, marker: int
    ) -> None:
        """Publish `commands` (stored in the saga's outbox under `marker`); they are
        cleared from it shortly after."""
        if len(commands) == 1:  # the usual case: no task to gather
            await self._transport.publish_command(commands[0].participant, commands[0].envelope)
        else:
            # Publish concurrently: the confirms are awaited together, not one by one.
            await asyncio.gather(
                *(self._transport.publish_command(c.participant, c.envelope) for c in commands)
            )
        self._to_clear.append((saga_id, [c.envelope.message_id for c in commands], marker))
        if self._clearing is None:
            self._clearing = asyncio.create_task(self._clear_soon())

    async def flush(self, saga_id: str, *, marker: int) -> int:
        """Publish whatever the saga's outbox holds; returns how many commands."""
        commands = await self._store.outbox(saga_id)
        await self.dispatch(saga_id, commands, marker=marker)
        return len(commands)

    async def settle(self) -> None:
        """Wait until the outboxes of everything published so far are cleared (or the
        clearing failed and was left to the relay); for shutdown and tests."""
        while self._clearing is not None:
            await asyncio.shield(self._clearing)

    async def _clear_soon(self) -> None:
        try:
            while self._to_clear:
                await asyncio.sleep(self._clear_delay)
                batch, self._to_clear = self._to_clear, []
                try:
                    await self._store.clear_outboxes(batch)
                except INFRASTRUCTURE_ERRORS as exc:
                    # Published all the same: the relay clears them once Redis answers.
                    log.warning("outboxes left to the relay", sagas=len(batch), error=repr(exc))
        finally:
            self._clearing = None


class OutboxRelay:
    """Publishes commands that a crashed or disconnected process left in an outbox."""

    def __init__(
        self,
        store: RedisSagaStore,
        dispatcher: Dispatcher,
        *,
        interval: float,
        grace: float,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._interval = interval
        self._grace = grace
        self._clock = clock

    async def run_once(self, *, limit: int = 100) -> int:
        """Publish every outbox older than the grace period; returns how many commands."""
        cutoff = marker_of(self._clock()) - int(self._grace * 1_000_000)
        published = 0
        for saga_id, marker in await self._store.marked_before(cutoff, limit):
            try:
                count = await self._dispatcher.flush(saga_id, marker=marker)
            except ValidationError as exc:
                # Only a hand-edited outbox gets here; it stays marked and in the logs
                # every round until someone looks.
                log.error("outbox entry unreadable", saga_id=saga_id, error=str(exc))
                continue
            if count:
                log.info("outbox relayed", saga_id=saga_id, commands=count)
            published += count
        return published

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; a failed round only delays the next."""
        await every(self._interval, stop, self.run_once, name="outbox relay")
