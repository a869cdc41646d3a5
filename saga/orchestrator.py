"""The orchestrator's shell: start sagas; apply replies, timers, cancels and replays."""

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import structlog
from pydantic import BaseModel, ValidationError

from contracts.envelope import Envelope, first_error, is_check_saga
from saga import metrics, tracing
from saga.clock import Clock, marker_of, new_id, utc_now
from saga.core.decide import (
    CancelSaga,
    Decision,
    OutgoingCommand,
    ReplaySaga,
    ReplyReceived,
    SagaInput,
    Timer,
    TimerFired,
    decide,
    start_saga,
)
from saga.core.definition import CheckedInput, SagaDefinition
from saga.core.events import ReplyIgnored
from saga.core.state import SagaState
from saga.handling import INFRASTRUCTURE_ERRORS
from saga.loops import every
from saga.outbox import DISPATCH_ERRORS, Dispatcher
from saga.registry import Definitions
from saga.scripts import ReplicasBehind
from saga.store import RedisSagaStore, TimerStore, VersionConflict
from saga.transport import ACK, DeadLetter, Delivery, Outcome

log = structlog.get_logger(__name__)

MAX_CONFLICT_RETRIES: Final = 20
# States an orchestrator remembers (the newest), so most inputs skip a read.
STATE_CACHE_SIZE: Final = 4096


class TooManyConflicts(Exception):
    """Other writers kept winning the race for one saga; the input is tried again later."""


class KeyedLocks:
    """One asyncio lock per key, forgotten when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def hold(self, key: str) -> "_Held":
        """`async with locks.hold(key):` runs the block with the key's lock held."""
        return _Held(self, key)

    def _lock(self, key: str) -> asyncio.Lock:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        return lock

    def _unlock(self, key: str, *, release: bool) -> None:
        lock, users = self._locks[key]
        if release:
            lock.release()
        if users == 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)


class _Held:
    """A held key, as a plain class: the generator of an @asynccontextmanager cost more
    than the lock, once per input."""

    def __init__(self, locks: KeyedLocks, key: str) -> None:
        self._locks, self._key = locks, key

    async def __aenter__(self) -> None:
        lock = self._locks._lock(self._key)
        try:
            await lock.acquire()
        except BaseException:
            self._locks._unlock(self._key, release=False)
            raise

    async def __aexit__(self, *_: object) -> None:
        self._locks._unlock(self._key, release=True)


class StateCache:
    """The states last written in this process (by its orchestrators, and by a starter
    beside them), newest kept, so most inputs skip a read.

    Only ever a guess: the append's version check catches a state that another
    orchestrator (here or elsewhere) has moved on since, and the caller then reads the
    real one.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._states: OrderedDict[str, SagaState] = OrderedDict()

    def get(self, saga_id: str) -> SagaState | None:
        """The last state written for the saga here, if still remembered."""
        state = self._states.get(saga_id)
        if state is not None:
            self._states.move_to_end(saga_id)
        return state

    def put(self, state: SagaState) -> None:
        """Remember a state just written (a terminal one is forgotten instead)."""
        if state.terminal or self._size == 0:
            self.drop(state.saga_id)
            return
        self._states[state.saga_id] = state
        self._states.move_to_end(state.saga_id)
        while len(self._states) > self._size:
            self._states.popitem(last=False)

    def drop(self, saga_id: str) -> None:
        """Forget the saga's state."""
        self._states.pop(saga_id, None)


@dataclass(frozen=True)
class Applied:
    """What became of an input: appended (with the state after it), or why not."""

    outcome: Literal["appended", "duplicate", "nothing_to_do", "unknown_saga", "unknown_type"]
    state: SagaState | None = None
    commands: tuple[OutgoingCommand, ...] = ()
    # Whether the commands reached the broker; if not, they wait in the outbox for the relay.
    published: bool = True


class SagaStarter:
    """Starts sagas the way the front door does: durable first, then published.

    `builtin` says which definition versions ship with the engine; a saga of any other
    starts only while its version is applied (the start and a delete exclude each other).
    `states`: the cache of the orchestrator in this process, if there is one, given each
    new saga's state so that its first reply needs no read.
    """

    def __init__(
        self,
        store: RedisSagaStore,
        dispatcher: Dispatcher,
        *,
        builtin: Callable[[str, int], bool],
        clock: Clock = utc_now,
        ids: Callable[[], str] = new_id,
        states: StateCache | None = None,
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._clock = clock
        self._ids = ids
        self._builtin = builtin
        self._states = states

    async def start(
        self,
        definition: SagaDefinition,
        *,
        customer: str,
        saga_input: BaseModel | Mapping[str, Any] | CheckedInput,
        trace_id: str | None = None,
        saga_id: str | None = None,
    ) -> SagaState:
        """Store the saga's first events and command, then try to publish it.

        Once this returns the saga is durable; if publishing fails here, the outbox
        relay publishes the command later. Raises InputError if the input does not
        match the definition's schema (a model is checked as its JSON; a CheckedInput
        of this definition is not checked again).
        """
        now = self._clock()
        saga_id = saga_id or self._ids()
        if trace_id is None and tracing.enabled():
            # Traced, every saga is a trace: the span's in progress, or a new one.
            trace_id = tracing.current_trace_id() or new_id()
        decision = start_saga(
            definition,
            saga_id=saga_id,
            customer=customer,
            saga_input=(
                saga_input.model_dump(mode="json")
                if isinstance(saga_input, BaseModel)
                else saga_input
            ),
            now=now,
            new_id=self._ids,
            trace_id=trace_id,
        )
        marker = marker_of(now)
        applied = not self._builtin(definition.name, definition.version)
        if not await self._store.create(decision, marker=marker, applied=applied):
            # Started already (the same idempotency key, or a retry): that start stands.
            existing = await self._store.load(saga_id)
            assert existing is not None, f"saga {saga_id} was started but has no state"
            return existing
        if self._states is not None:
            self._states.put(decision.state)
        log.info(
            "saga started",
            saga_id=saga_id,
            saga_type=definition.name,
            customer=customer,
            trace_id=trace_id,
        )
        metrics.SAGAS_STARTED.labels(definition.name).inc()
        with tracing.saga_started(saga_id, definition.name, decision.state.trace_id, now):
            try:
                await self._dispatcher.dispatch(saga_id, decision.commands, marker=marker)
            except ReplicasBehind:
                raise  # not durable enough yet to publish: the input is tried again
            except DISPATCH_ERRORS as exc:
                log.warning(
                    "first command left to the outbox relay", saga_id=saga_id, error=repr(exc)
                )
        return decision.state


def reply_input_id(envelope: Envelope) -> str:
    """A reply is the same input again only if it answers the same command: a participant
    may answer a retry with the reply it gave the first time, message id and all ('@'
    appears in no message id)."""
    return f"{envelope.message_id}@{envelope.causation_id or ''}"


class Orchestrator:
    """Applies each input to its saga: decide, append atomically, publish, then ack."""

    def __init__(
        self,
        store: RedisSagaStore,
        dispatcher: Dispatcher,
        definitions: Definitions,
        *,
        clock: Clock = utc_now,
        ids: Callable[[], str] = new_id,
        rng: Callable[[], float] = random.random,
        states: StateCache | None = None,
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._definitions = definitions
        self._clock = clock
        self._ids = ids
        self._rng = rng
        self._cache = StateCache(STATE_CACHE_SIZE) if states is None else states
        # Inputs of one saga are applied one at a time by this orchestrator; across
        # orchestrators (another here, sharing the cache, or elsewhere) the version
        # check keeps them apart.
        self._locks = KeyedLocks()

    async def handle(self, delivery: Delivery) -> Outcome:
        """The reply consumer's handler."""
        try:
            envelope = Envelope.from_bytes(delivery.body)
        except ValidationError as exc:
            return DeadLetter(f"unparseable reply: {first_error(exc)}")
        # Any type: a participant of another definition may answer with types this
        # engine has no contract for. The saga judges it: the success it awaits, a
        # CommandFailed, or else a protocol error of the step.
        reply = ReplyReceived(
            message_id=envelope.message_id,
            causation_id=envelope.causation_id,
            type=envelope.type,
            payload=envelope.payload,
        )
        applied = await self.apply(envelope.saga_id, reply, applied_id=reply_input_id(envelope))
        if applied.outcome == "unknown_saga":
            if is_check_saga(envelope.saga_id):
                # The conformance check's made-up saga: it reads the reply on a queue of
                # its own; here it is no one's, and no fault either.
                log.info("reply to the conformance check ignored", saga_id=envelope.saga_id)
                return ACK
            return DeadLetter(f"unknown saga {envelope.saga_id}")
        if applied.outcome == "unknown_type":
            return DeadLetter(f"unknown saga type of saga {envelope.saga_id}")
        return ACK

    async def fire(self, timer: Timer) -> Applied:
        """Apply a timer that came due (at most once, whoever else fires it)."""
        return await self.apply(
            timer.saga_id, TimerFired(timer), applied_id=f"timer:{timer.timer_id}"
        )

    async def apply(self, saga_id: str, saga_input: SagaInput, *, applied_id: str) -> Applied:
        """Decide on one input and make the decision durable, then publish its commands.

        `applied_id` names the input: the same id is applied at most once.
        """
        async with self._locks.hold(saga_id):
            if isinstance(saga_input, ReplyReceived) or not tracing.enabled():
                applied = await self._apply(saga_id, saga_input, applied_id)
                _annotate(applied)  # the reply's consumer span
                return applied
            return await self._apply_traced(saga_id, saga_input, applied_id)

    async def _apply_traced(self, saga_id: str, saga_input: SagaInput, applied_id: str) -> Applied:
        """Apply a timer, a cancel or a replay in a span of the saga's trace."""
        state = self._cache.get(saga_id) or await self._store.load(saga_id)
        name, attributes = _span_of(saga_input)
        with tracing.saga_span(
            name,
            saga_id=saga_id,
            trace_id=None if state is None else state.trace_id,
            saga_type=None if state is None else state.saga_type,
            attributes=attributes,
        ):
            applied = await self._apply(saga_id, saga_input, applied_id)
            _annotate(applied)
            return applied

    async def _apply(self, saga_id: str, saga_input: SagaInput, applied_id: str) -> Applied:
        # The input's log fields, passed to each line rather than bound: binding a logger
        # for every input cost more than the lines it serves (at warning level, none).
        context: dict[str, Any] = {
            "saga_id": saga_id,
            "message_id": applied_id,
            "input": type(saga_input).__name__,
        }
        for _ in range(MAX_CONFLICT_RETRIES):
            state = self._cache.get(saga_id)
            cached = state is not None
            if state is None:
                state = await self._store.load(saga_id)
            if state is None:
                return Applied("unknown_saga")
            definition = await self._definitions.get(state.saga_type, state.definition_version)
            if definition is None:
                return Applied("unknown_type", state)
            context["trace_id"] = state.trace_id
            now = self._clock()
            decision = decide(
                definition, state, saga_input, now=now, new_id=self._ids, rng=self._rng
            )
            if not decision.records:
                if cached:
                    self._cache.drop(saga_id)  # nothing to do, by a guess: ask Redis
                    continue
                return Applied("nothing_to_do", state)
            marker = marker_of(now)
            answered = saga_input.causation_id if isinstance(saga_input, ReplyReceived) else None
            try:
                outcome = await self._store.append(
                    decision,
                    expected_version=state.version,
                    applied_id=applied_id,
                    marker=marker,
                    record_applied=not _only_recorded(decision),
                    answered=answered,
                )
            except VersionConflict:
                log.debug("version conflict, deciding again", **context)
                self._cache.drop(saga_id)
                continue
            except BaseException:
                self._cache.drop(saga_id)  # the append may or may not have happened
                raise
            if outcome == "appended":
                self._cache.put(decision.state)
            else:
                self._cache.drop(saga_id)
            try:
                if outcome == "duplicate":
                    # Applied before: if that attempt died before publishing, publish
                    # now rather than wait for the relay.
                    await self._store.mark_outbox(saga_id, marker)
                    flushed = await self._dispatcher.flush(saga_id, marker=marker)
                    log.info("duplicate input ignored", republished=flushed, **context)
                    return Applied("duplicate", state)
                if answered is not None:
                    self._dispatcher.answered(answered)  # out of its outbox with the append
                _log_decision(context, decision)
                metrics.observe(state, decision)
                if decision.commands:
                    await self._dispatcher.dispatch(saga_id, decision.commands, marker=marker)
            except ReplicasBehind:
                raise  # not durable enough yet to publish: the input is tried again
            except DISPATCH_ERRORS as exc:
                # The decision is durable and its commands are in the outbox: the relay
                # publishes them once the broker takes them again.
                log.warning("commands left to the outbox relay", error=repr(exc), **context)
                if outcome == "duplicate":
                    return Applied("duplicate", state, published=False)
                return Applied("appended", decision.state, decision.commands, published=False)
            return Applied("appended", decision.state, decision.commands)
        raise TooManyConflicts(f"saga {saga_id}: {MAX_CONFLICT_RETRIES} conflicts in a row")


class TimerLoop:
    """Fires due timers: claims them atomically, applies them, then forgets them."""

    def __init__(
        self,
        timers: TimerStore,
        orchestrator: Orchestrator,
        *,
        interval: float,
        lease: float,
        clock: Clock = utc_now,
    ) -> None:
        self._timers = timers
        self._orchestrator = orchestrator
        self._interval = interval
        self._lease = int(lease * 1_000_000)
        self._clock = clock

    async def run_once(self, *, limit: int = 100) -> int:
        """Fire every due timer (up to `limit`); returns how many were dealt with."""
        due = await self._timers.claim(now=marker_of(self._clock()), lease=self._lease, limit=limit)
        for _, timer in due:
            try:
                applied = await self._orchestrator.fire(timer)
            except INFRASTRUCTURE_ERRORS:
                raise  # the round ends; the claimed timers come due again after the lease
            except Exception as exc:
                # A bug, not an outage: the timer stays and comes due again after its
                # lease, in the logs each time, rather than being dropped.
                log.exception("timer failed", saga_id=timer.saga_id, error=repr(exc))
                continue
            state = applied.state
            if (
                applied.outcome == "nothing_to_do"
                and state is not None
                and not state.terminal
                and state.version < timer.version
            ):
                # Set by a decision not stored yet (its writer is between writing the timer
                # and its append): keep it; it comes due again after the lease.
                continue
            log.log(
                logging.INFO if applied.outcome == "appended" else logging.DEBUG,
                "timer handled",
                saga_id=timer.saga_id,
                kind=timer.kind,
                step=timer.step,
                outcome=applied.outcome,
            )
            if applied.outcome in ("unknown_saga", "unknown_type"):
                log.warning("timer of an unknown saga dropped", saga_id=timer.saga_id)
            await self._timers.delete(timer)
        return len(due)

    async def run(self, stop: asyncio.Event) -> None:
        """Fire timers until `stop` is set; claimed timers of a failed round come due
        again after their lease."""
        await every(self._interval, stop, self.run_once, name="timer")


def _span_of(saga_input: SagaInput) -> tuple[str, dict[str, str | None]]:
    """The name and attributes of the span of an input other than a reply."""
    match saga_input:
        case TimerFired(timer=timer):
            return f"timer {timer.kind}", {"saga.step": timer.step}
        case CancelSaga(by=by):
            return "cancel saga", {"saga.by": by}
        case ReplaySaga(by=by):
            return "replay saga", {"saga.by": by}
        case _:
            return type(saga_input).__name__, {}


def _annotate(applied: Applied) -> None:
    state = applied.state
    tracing.annotate_current(
        {
            "saga.outcome": applied.outcome,
            "saga.type": None if state is None else state.saga_type,
            "saga.status": None if state is None else state.status,
        }
    )


def _only_recorded(decision: Decision) -> bool:
    """A reply the saga recorded without applying it: it is not marked as applied, so the
    same reply sent again may still answer a try the saga makes later (a replay asking a
    step again under the key that reply answered)."""
    return all(isinstance(r.event, ReplyIgnored) for r in decision.records)


def _log_decision(context: dict[str, Any], decision: Decision) -> None:
    if not log.is_enabled_for(logging.INFO):
        return  # the hot path, at warning level: not even the arguments are built
    steps = [getattr(r.event, "step", None) for r in decision.records]
    for record in decision.records:
        log.info(
            "saga event",
            **context,
            saga_event=record.event.type,
            seq=record.seq,
            step=getattr(record.event, "step", None),
        )
    log.info(
        "input applied",
        **context,
        step=next((s for s in steps if s is not None), None),
        outcome=decision.records[-1].event.type,
        status=decision.state.status,
        version=decision.state.version,
    )
