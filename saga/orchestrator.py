"""The orchestrator's shell: start sagas, apply replies, publish the outbox, relay leftovers."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import Final

import structlog
from pydantic import BaseModel, ValidationError

from contracts.envelope import Envelope
from contracts.messages import REPLIES
from saga.core.decide import Decision, OutgoingCommand, ReplyReceived, decide, start_saga
from saga.core.definition import SagaDefinition
from saga.core.state import SagaState
from saga.store import RedisSagaStore, VersionConflict
from saga.transport import (
    ACK,
    INFRASTRUCTURE_ERRORS,
    DeadLetter,
    Delivery,
    Outcome,
    RabbitTransport,
)

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
MAX_CONFLICT_RETRIES: Final = 20


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def marker_of(now: datetime) -> int:
    """An outbox marker: the time in microseconds (exact in a Redis score)."""
    return int(now.timestamp() * 1_000_000)


class KeyedLocks:
    """One asyncio lock per key, forgotten when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class Dispatcher:
    """Publishes a saga's outgoing commands with confirms, then clears them from its outbox."""

    def __init__(self, store: RedisSagaStore, transport: RabbitTransport) -> None:
        self._store = store
        self._transport = transport

    async def dispatch(
        self,
        saga_id: str,
        commands: tuple[OutgoingCommand, ...] | list[OutgoingCommand],
        *,
        marker: int,
    ) -> None:
        if not commands:
            return
        # Publish concurrently: the confirms are awaited together, not one by one.
        await asyncio.gather(
            *(self._transport.publish_command(c.participant, c.envelope) for c in commands)
        )
        await self._store.clear_outbox(
            saga_id, [c.envelope.message_id for c in commands], marker=marker
        )


class SagaStarter:
    """Starts sagas the way the front door does: durable first, then published."""

    def __init__(
        self,
        store: RedisSagaStore,
        dispatcher: Dispatcher,
        *,
        clock: Clock = utc_now,
        ids: Callable[[], str] = new_id,
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._clock = clock
        self._ids = ids

    async def start(
        self, definition: SagaDefinition, *, customer: str, saga_input: BaseModel
    ) -> SagaState:
        """Store the saga's first events and command, then try to publish it.

        Once this returns the saga is durable; if publishing fails here, the outbox
        relay publishes the command later.
        """
        now = self._clock()
        saga_id = self._ids()
        decision = start_saga(
            definition,
            saga_id=saga_id,
            customer=customer,
            saga_input=saga_input,
            now=now,
            new_id=self._ids,
        )
        marker = marker_of(now)
        await self._store.create(decision, marker=marker)
        log.info("saga started", saga_id=saga_id, saga_type=definition.name, customer=customer)
        try:
            await self._dispatcher.dispatch(saga_id, decision.commands, marker=marker)
        except INFRASTRUCTURE_ERRORS as exc:
            log.warning("first command left to the outbox relay", saga_id=saga_id, error=repr(exc))
        return decision.state


class Orchestrator:
    """Applies each reply to its saga: decide, append atomically, publish, then ack."""

    def __init__(
        self,
        store: RedisSagaStore,
        dispatcher: Dispatcher,
        definitions: Mapping[str, SagaDefinition],
        *,
        clock: Clock = utc_now,
        ids: Callable[[], str] = new_id,
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._definitions = definitions
        self._clock = clock
        self._ids = ids
        # Replies of one saga are applied one at a time in this process; across
        # processes the version check keeps them apart.
        self._locks = KeyedLocks()

    async def handle(self, delivery: Delivery) -> Outcome:
        """The reply consumer's handler."""
        try:
            envelope = Envelope.from_bytes(delivery.body)
        except ValidationError as exc:
            return DeadLetter(f"unparseable reply: {_first_error(exc)}")
        if envelope.type not in REPLIES:
            return DeadLetter(f"unknown reply type {envelope.type!r}")
        async with self._locks.hold(envelope.saga_id):
            return await self._apply(envelope)

    async def _apply(self, envelope: Envelope) -> Outcome:
        bound = log.bind(
            saga_id=envelope.saga_id, message_id=envelope.message_id, reply=envelope.type
        )
        reply = ReplyReceived(
            message_id=envelope.message_id,
            causation_id=envelope.causation_id,
            type=envelope.type,
            payload=envelope.payload,
        )
        for _ in range(MAX_CONFLICT_RETRIES):
            state = await self._store.load(envelope.saga_id)
            if state is None:
                return DeadLetter(f"unknown saga {envelope.saga_id}")
            definition = self._definitions.get(state.saga_type)
            if definition is None:
                return DeadLetter(f"unknown saga type {state.saga_type!r}")
            now = self._clock()
            decision = decide(definition, state, reply, now=now, new_id=self._ids)
            marker = marker_of(now)
            try:
                outcome = await self._store.append(
                    decision,
                    expected_version=state.version,
                    applied_id=envelope.message_id,
                    marker=marker,
                )
            except VersionConflict:
                bound.debug("version conflict, deciding again")
                continue
            if outcome == "duplicate":
                # Seen before: if that attempt died before publishing, publish now
                # rather than wait for the relay.
                bound.info("duplicate reply ignored")
                leftovers = await self._store.outbox(state.saga_id)
                if leftovers:
                    await self._store.mark_outbox(state.saga_id, marker)
                    await self._dispatcher.dispatch(state.saga_id, leftovers, marker=marker)
                return ACK
            _log_decision(bound, decision)
            await self._dispatcher.dispatch(state.saga_id, decision.commands, marker=marker)
            return ACK
        raise VersionConflict(envelope.saga_id, -1, -1)


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
            commands = await self._store.outbox(saga_id)
            await self._dispatcher.dispatch(saga_id, commands, marker=marker)
            if not commands:
                await self._store.clear_outbox(saga_id, [], marker=marker)
            else:
                log.info("outbox relayed", saga_id=saga_id, commands=len(commands))
            published += len(commands)
        return published

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; a server outage only delays the next round."""
        while not stop.is_set():
            try:
                await self.run_once()
            except INFRASTRUCTURE_ERRORS as exc:
                log.warning("outbox relay round failed, will retry", error=repr(exc))
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)


def _log_decision(bound: structlog.typing.FilteringBoundLogger, decision: Decision) -> None:
    for record in decision.records:
        bound.info(
            "saga event", saga_event=record.event.type, seq=record.seq, status=decision.state.status
        )


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "body"
    return f"{where}: {err.get('msg', 'invalid')}"
