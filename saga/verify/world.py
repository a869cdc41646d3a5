"""One saga run through the pure core against simulated participants and a simulated clock:
replies and timers are delivered in time order, no one waits, nothing is sent anywhere.

The participants keep the protocol (docs/participants.md): one effect per idempotency key,
the same answer to every try of a key. What each try of an action does is its behaviour
(`saga.verify.script`); the world asks for one the first time the action is tried.
"""

import copy
import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from contracts.messages import CommandFailed
from saga.core.decide import (
    Decision,
    OutgoingCommand,
    ReplyReceived,
    SagaInput,
    TimerFired,
    decide,
    start_saga,
)
from saga.core.definition import SagaDefinition
from saga.core.events import Action, EventRecord, ReplyIgnored, StepRequested
from saga.core.state import SagaState
from saga.verify.invariants import undone_past_the_pivot
from saga.verify.script import PROCESSED, Behaviour, Try

T0: Final = datetime(2026, 1, 1, tzinfo=UTC)
SAGA_ID: Final = "verify-1"
CUSTOMER: Final = "verify@example.com"
# A saga that takes more inputs than this is taken never to end.
MAX_INPUTS: Final = 2000
# What the refusal of a scripted participant says.
REFUSED_REASON: Final = "refused"
Effect = Literal["done", "maybe"]
Replies = Mapping[tuple[str, Action], Mapping[str, Any]]


@dataclass(frozen=True)
class Need:
    """The world waits to be told how a participant answers this action's tries."""

    step: str
    action: Action


@dataclass(frozen=True, order=True)
class _Delivery:
    at: datetime
    order: int
    saga_input: SagaInput = field(compare=False)
    timer_id: str | None = field(default=None, compare=False)


@dataclass
class World:
    """A saga and its participants at one moment of a path; `clone` it to branch."""

    definition: SagaDefinition
    replies: Replies
    state: SagaState
    records: list[EventRecord]
    now: datetime = T0
    script: dict[tuple[str, Action], Behaviour] = field(default_factory=dict)
    chosen: list[tuple[str, Action, Behaviour]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    # What the participants did: the answer kept per idempotency key, each step's effect,
    # the keys under which each step's compensation took effect.
    answers: dict[str, str] = field(default_factory=dict)
    effects: dict[str, Effect] = field(default_factory=dict)
    undone: dict[str, set[str]] = field(default_factory=dict)
    inputs: int = 0
    _queue: list[_Delivery] = field(default_factory=list)
    _waiting: list[OutgoingCommand] = field(default_factory=list)
    _ids: int = 0
    _order: int = 0

    @classmethod
    def start(
        cls, definition: SagaDefinition, saga_input: Mapping[str, Any], replies: Replies
    ) -> "World":
        """A saga of the definition just started on `saga_input` (InputError if the input
        schema refuses it)."""
        counter = iter(range(1, 1_000_000))
        decision = start_saga(
            definition,
            saga_id=SAGA_ID,
            customer=CUSTOMER,
            saga_input=saga_input,
            now=T0,
            new_id=lambda: f"start-{next(counter)}",
        )
        world = cls(definition, replies, decision.state, list(decision.records))
        world._took(decision, before=None)
        return world

    @property
    def _moment(self) -> timedelta:
        shortest = min(s.timeout for s in self.definition.steps)
        return min(timedelta(milliseconds=1), shortest / 2)

    def clone(self) -> "World":
        """An independent copy: what happens to one does not happen to the other."""
        twin = copy.copy(self)
        twin.records = list(self.records)
        twin.script = dict(self.script)
        twin.chosen = list(self.chosen)
        twin.violations = list(self.violations)
        twin.answers = dict(self.answers)
        twin.effects = dict(self.effects)
        twin.undone = {k: set(v) for k, v in self.undone.items()}
        twin._queue = list(self._queue)
        twin._waiting = list(self._waiting)
        return twin

    def choose(self, need: Need, behaviour: Behaviour) -> None:
        """How the participant answers the tries of the action the world waits on."""
        self.script[(need.step, need.action)] = behaviour
        self.chosen.append((need.step, need.action, behaviour))

    def run(self) -> Need | None:
        """Go on until a behaviour must be chosen (returned) or nothing is left to deliver
        (None: the path is over; `violations` says what went wrong on it)."""
        while True:
            while self._waiting:
                command = self._waiting[0]
                pending = self.state.pending.get(command.envelope.message_id)
                kind = (pending.step, pending.action) if pending else None
                if kind is not None and kind not in self.script:
                    return Need(*kind)
                self._waiting.pop(0)
                if pending is not None:
                    self._try(command, pending.step, pending.action)
            if not self._queue:
                if not self.state.terminal:
                    self.violations.append(
                        f"the saga stopped {self.state.status} with nothing to wait for"
                    )
                return None
            if self.inputs >= MAX_INPUTS:
                self.violations.append(f"the saga did not end within {MAX_INPUTS} inputs")
                return None
            self._deliver(heapq.heappop(self._queue))

    def apply(self, saga_input: SagaInput) -> Decision:
        """Decide one input now (an operator's cancel or replay, a reply of one's own):
        what it sends is answered as its actions' behaviours say."""
        self.inputs += 1
        before = self.state
        decision = decide(
            self.definition,
            before,
            saga_input,
            now=self.now,
            new_id=self._new_id,
            rng=lambda: 0.5,
        )
        self.state = decision.state
        self.records.extend(decision.records)
        self._took(decision, before=before)
        return decision

    def _deliver(self, delivery: _Delivery) -> None:
        self.now = max(self.now, delivery.at)
        self.apply(delivery.saga_input)

    def _took(self, decision: Decision, *, before: SagaState | None) -> None:
        """Queue what a decision asks for, and check what may be checked at once."""
        if before is not None and before.terminal:
            acted = [
                r.event.type for r in decision.records if not isinstance(r.event, ReplyIgnored)
            ]
            if acted or decision.commands:
                self.violations.append(f"the saga acted after it ended {before.status}: {acted}")
        if any(
            isinstance(r.event, StepRequested) and r.event.action == "compensate"
            for r in decision.records
        ):
            self.violations += undone_past_the_pivot(self.definition, decision.records, before)
        self._waiting.extend(decision.commands)
        gone = set(decision.cancelled_timers)
        if gone:
            self._queue = [d for d in self._queue if d.timer_id not in gone]
            heapq.heapify(self._queue)
        for timer in decision.timers:
            self._push(timer.due_at, TimerFired(timer), timer_id=timer.timer_id)

    def _try(self, command: OutgoingCommand, step: str, action: Action) -> None:
        """The participant gets (or not) one try of a command, and answers (or not)."""
        current = self.state.step(step)
        attempt = current.attempts if action == "execute" else current.compensation_attempts
        outcome = self.script[(step, action)].at(attempt)
        if outcome is Try.LOST_COMMAND:
            return
        key = command.envelope.idempotency_key or command.envelope.message_id
        kept = self.answers.get(key)
        if kept is None and outcome in PROCESSED:
            kept = self.answers[key] = "ok"
            self._effect(step, action, key, "done")
        elif kept is None and outcome is Try.REFUSED:
            kept = self.answers[key] = "refused"
        if kept is None:  # a try that failed for now: nothing kept, try again
            unknown = outcome is Try.EFFECT_UNKNOWN
            if unknown:
                self._effect(step, action, key, "maybe")
            failure = CommandFailed(reason="unavailable", transient=True, effect_unknown=unknown)
            self._reply(command, "CommandFailed", failure.model_dump(mode="json"))
            return
        reply_type, payload = self._answer(step, action, kept)
        if outcome is Try.LOST_REPLY:
            return
        timeout = self.definition.step(step).timeout
        self._reply(command, reply_type, payload, late=timeout if outcome is Try.LATE else None)
        if outcome is Try.DUPLICATE:
            self._reply(command, reply_type, payload)

    def _answer(self, step: str, action: Action, kept: str) -> tuple[str, dict[str, Any]]:
        if kept == "refused":
            return "CommandFailed", CommandFailed(reason=REFUSED_REASON).model_dump(mode="json")
        definition = self.definition.step(step)
        success = definition.success if action == "execute" else definition.compensated
        assert success is not None  # only a step with a compensation is undone
        return success, dict(self.replies.get((step, action), {}))

    def _effect(self, step: str, action: Action, key: str, effect: Effect) -> None:
        if action == "execute":
            if self.effects.get(step) != "done":
                self.effects[step] = effect
        elif effect == "done" and step in self.effects:
            self.undone.setdefault(step, set()).add(key)

    def _reply(
        self,
        command: OutgoingCommand,
        reply_type: str,
        payload: dict[str, Any],
        *,
        late: timedelta | None = None,
    ) -> None:
        # A reply comes a moment after its command (before any timeout: half the shortest
        # at most); a late one, that moment after its timeout.
        at = self.now + (late or timedelta(0)) + self._moment
        reply = ReplyReceived(
            message_id=self._new_id(),
            causation_id=command.envelope.message_id,
            type=reply_type,
            payload=payload,
        )
        self._push(at, reply)

    def _push(self, at: datetime, saga_input: SagaInput, *, timer_id: str | None = None) -> None:
        self._order += 1
        heapq.heappush(self._queue, _Delivery(at, self._order, saga_input, timer_id))

    def _new_id(self) -> str:
        self._ids += 1
        return f"m{self._ids}"
