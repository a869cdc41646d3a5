"""The outbox: publish a saga's stored commands with confirms, and relay what a crash left."""

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Final

import structlog
from pydantic import ValidationError

from saga.clock import Clock, marker_of, utc_now
from saga.core.decide import OutgoingCommand
from saga.handling import INFRASTRUCTURE_ERRORS
from saga.loops import every
from saga.store import RedisSagaStore
from saga.transport import PUBLISH_ERRORS, Transport

log = structlog.get_logger(__name__)

# What can stop a publication without being the command's fault: it stays in the outbox.
DISPATCH_ERRORS = (*INFRASTRUCTURE_ERRORS, *PUBLISH_ERRORS)


# Clearings due within this much of one another go in one pipeline.
BATCH_WINDOW: Final = 0.02


class _Published:
    """One dispatch's commands, to clear from the saga's outbox under its marker (those
    not answered meanwhile), when, and a future for whoever waits until that was tried
    (made only for a waiter: rare)."""

    __slots__ = ("_done", "_settled", "answered", "clear_at", "marker", "message_ids", "saga_id")

    def __init__(self, saga_id: str, message_ids: list[str], marker: int) -> None:
        self.saga_id, self.message_ids, self.marker = saga_id, message_ids, marker
        self.clear_at = 0.0
        self.answered = False  # every command answered: nothing left to clear
        self._done = False
        self._settled: asyncio.Future[None] | None = None

    def settled(self) -> "asyncio.Future[None]":
        """Resolves once clearing the commands was tried, or publishing them failed."""
        if self._settled is None:
            self._settled = asyncio.get_running_loop().create_future()
            if self._done:
                self._settled.set_result(None)
        return self._settled

    def settle(self) -> None:
        """Clearing was tried, or publishing failed: tell the waiters."""
        self._done = True
        if self._settled is not None and not self._settled.done():
            self._settled.set_result(None)


class Dispatcher:
    """Publishes a saga's outgoing commands with confirms, then clears them from its outbox.

    A reply is the usual way out of the outbox: its append takes the command it answers
    out in the same script (`answered` tells this dispatcher so), which costs Redis
    next to nothing. A command not answered within `answer_wait` of its confirm is
    cleared by a script of its own, so that the relay, after its grace period, does not
    publish it again while its step runs; the clearings due together go in one pipeline.
    Until then a published command is still in its outbox; if the process dies
    meanwhile, the relay publishes it again after its grace period, and the participant,
    which has seen its idempotency key, answers as before. While this process is
    publishing a command, or has published it and it was neither answered nor cleared
    yet, `flush` leaves it alone: a redelivered reply and the relay that find one outbox
    at once publish it once.
    """

    def __init__(
        self, store: RedisSagaStore, transport: Transport, *, answer_wait: float = 1.0
    ) -> None:
        self._store = store
        self._transport = transport
        self._answer_wait = answer_wait
        self._to_clear: list[_Published] = []
        self._due_sooner = asyncio.Event()  # a clearing came due before the one awaited
        self._clearing: asyncio.Task[None] | None = None
        # The commands under way here (publishing, or published and not yet cleared).
        self._unsettled: dict[str, _Published] = {}

    async def dispatch(
        self, saga_id: str, commands: Sequence[OutgoingCommand], *, marker: int
    ) -> None:
        """Publish `commands` (stored in the saga's outbox under `marker`); they are
        cleared from it shortly after."""
        published = _Published(saga_id, [c.envelope.message_id for c in commands], marker)
        for message_id in published.message_ids:
            self._unsettled[message_id] = published
        try:
            if len(commands) == 1:  # the usual case: no task to gather
                await self._transport.publish_command(commands[0].participant, commands[0].envelope)
            else:
                # Publish concurrently: the confirms are awaited together, not one by one.
                await asyncio.gather(
                    *(self._transport.publish_command(c.participant, c.envelope) for c in commands)
                )
        except BaseException:
            self._settle(published)  # still in the outbox: the relay's to publish
            raise
        if published.answered:
            return  # answered before its confirm came: out of the outbox already
        # Nothing to be answered (a flush that found every command under way here): only
        # the marker to clear, at once.
        wait = self._answer_wait if published.message_ids else 0.0
        published.clear_at = asyncio.get_running_loop().time() + wait
        self._to_clear.append(published)
        if self._clearing is None:
            self._clearing = asyncio.create_task(self._clear_soon())
        elif not wait:
            self._due_sooner.set()

    def answered(self, command_id: str) -> None:
        """The reply to a command was appended, which took the command out of its
        outbox: it needs no clearing."""
        published = self._unsettled.pop(command_id, None)
        if published is None:
            return  # not published here, or cleared already
        published.message_ids.remove(command_id)
        if not published.message_ids:
            published.answered = True
            published.settle()

    async def flush(self, saga_id: str, *, marker: int) -> int:
        """Publish whatever the saga's outbox holds that is not under way here already;
        returns how many commands it published."""
        commands = await self._store.take_outbox(saga_id)
        under_way = [self._unsettled.get(c.envelope.message_id) for c in commands]
        if any(u is not None for u in under_way):
            # Published (or being published) here a moment ago: not again. Their
            # clearing goes first, so that ours, under `marker`, finds the outbox empty
            # and takes the saga's mark with it.
            commands = [c for c, u in zip(commands, under_way, strict=True) if u is None]
            # wait, not gather: a flush cancelled meanwhile must not cancel their futures
            await asyncio.wait({u.settled() for u in under_way if u is not None})
        await self.dispatch(saga_id, commands, marker=marker)
        return len(commands)

    async def settle(self) -> None:
        """Wait until the outboxes of everything published so far are cleared (or the
        clearing failed and was left to the relay); for shutdown and tests."""
        while self._clearing is not None:
            await asyncio.shield(self._clearing)

    def _settle(self, published: _Published) -> None:
        for message_id in published.message_ids:
            if self._unsettled.get(message_id) is published:
                del self._unsettled[message_id]
        published.settle()

    async def _clear_soon(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._to_clear:
                first = min(p.clear_at for p in self._to_clear)
                self._due_sooner.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._due_sooner.wait(), max(first - loop.time(), BATCH_WINDOW)
                    )
                until = loop.time() + BATCH_WINDOW
                due = [p for p in self._to_clear if p.clear_at <= until]
                self._to_clear = [p for p in self._to_clear if p.clear_at > until]
                batch = [p for p in due if not p.answered]
                if not batch:
                    continue
                try:
                    await self._store.clear_outboxes(
                        [(p.saga_id, p.message_ids, p.marker) for p in batch]
                    )
                except INFRASTRUCTURE_ERRORS as exc:
                    # Published all the same: the relay clears them once Redis answers.
                    log.warning("outboxes left to the relay", sagas=len(batch), error=repr(exc))
                finally:
                    for published in batch:
                        self._settle(published)
        finally:
            self._clearing = None


class OutboxRelay:
    """Publishes commands that a crashed or disconnected process left in an outbox.

    A round claims the outboxes older than the grace period by marking them anew, as of
    now: neither its own next round nor another orchestrator's relay takes one again
    until the grace has passed once more, by when its clearing has long had its chance.
    A relay that dies after its claim leaves the outbox to be claimed again then.
    """

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
        now = marker_of(self._clock())
        cutoff = now - int(self._grace * 1_000_000)
        published = 0
        for saga_id in await self._store.claim_outboxes(cutoff=cutoff, now=now, limit=limit):
            try:
                count = await self._dispatcher.flush(saga_id, marker=now)
            except ValidationError as exc:
                # Only a hand-edited outbox gets here; it stays marked and in the logs
                # after every grace period until someone looks.
                log.error("outbox entry unreadable", saga_id=saga_id, error=str(exc))
                continue
            except PUBLISH_ERRORS as exc:
                # The broker refused this saga's command (no queue takes it, say): it
                # stays, claimed, for the next try after the grace, and the outboxes
                # behind it go on now rather than wait behind it every round.
                log.warning(
                    "outbox command refused, tried again later", saga_id=saga_id, error=repr(exc)
                )
                continue
            if count:
                log.info("outbox relayed", saga_id=saga_id, commands=count)
            published += count
        return published

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; a failed round only delays the next."""
        await every(self._interval, stop, self.run_once, name="outbox relay")
