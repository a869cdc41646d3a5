"""The orchestrator's shell: start sagas, and apply each reply (decide, append, publish, ack)."""

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Final

import structlog
from pydantic import BaseModel, ValidationError

from contracts.envelope import Envelope, first_error
from contracts.messages import REPLIES
from saga.clock import Clock, marker_of, new_id, utc_now
from saga.core.decide import Decision, ReplyReceived, decide, start_saga
from saga.core.definition import SagaDefinition
from saga.core.state import SagaState
from saga.outbox import DISPATCH_ERRORS, Dispatcher
from saga.store import RedisSagaStore, VersionConflict
from saga.transport import ACK, DeadLetter, Delivery, Outcome

log = structlog.get_logger(__name__)

MAX_CONFLICT_RETRIES: Final = 20


class TooManyConflicts(Exception):
    """Other writers kept winning the race for one saga; the message is tried again later."""


class KeyedLocks:
    """One asyncio lock per key, forgotten when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold the key's lock for the duration of the block."""
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
        except DISPATCH_ERRORS as exc:
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
            return DeadLetter(f"unparseable reply: {first_error(exc)}")
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
            try:
                if outcome == "duplicate":
                    # Applied before: if that attempt died before publishing, publish
                    # now rather than wait for the relay.
                    await self._store.mark_outbox(state.saga_id, marker)
                    flushed = await self._dispatcher.flush(state.saga_id, marker=marker)
                    bound.info("duplicate reply ignored", republished=flushed)
                else:
                    _log_decision(bound, decision)
                    await self._dispatcher.dispatch(state.saga_id, decision.commands, marker=marker)
            except DISPATCH_ERRORS as exc:
                # The decision is durable and its commands are in the outbox: the relay
                # publishes them once the broker takes them again.
                bound.warning("commands left to the outbox relay", error=repr(exc))
            return ACK
        raise TooManyConflicts(
            f"saga {envelope.saga_id}: {MAX_CONFLICT_RETRIES} conflicts in a row"
        )


def _log_decision(bound: structlog.typing.FilteringBoundLogger, decision: Decision) -> None:
    for record in decision.records:
        bound.info("saga event", saga_event=record.event.type, seq=record.seq)
    bound.info("reply applied", status=decision.state.status, version=decision.state.version)
