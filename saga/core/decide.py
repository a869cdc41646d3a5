"""decide: everything a saga does next, as data (events and commands). No I/O, no clock."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from contracts.envelope import Envelope
from contracts.messages import CommandFailed
from contracts.topology import Participant
from saga.core.definition import SagaDefinition, StepDefinition
from saga.core.events import (
    Action,
    CompensationFailed,
    CompensationStarted,
    Event,
    EventRecord,
    ReplyIgnored,
    SagaCompensated,
    SagaCompleted,
    SagaFailed,
    SagaStarted,
    StepCompensated,
    StepFailed,
    StepRequested,
    StepSkipped,
    StepSucceeded,
)
from saga.core.state import SagaState, evolve

NewId = Callable[[], str]
# A reply of the wrong type or shape: the step's effect is unknown.
PROTOCOL_ERROR = "protocol_error"


@dataclass(frozen=True)
class ReplyReceived:
    """A participant's reply, as the orchestrator received it."""

    message_id: str
    causation_id: str | None
    type: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class OutgoingCommand:
    """A command to publish to a participant once the decision is stored."""

    participant: Participant
    envelope: Envelope


@dataclass(frozen=True)
class Decision:
    """New events (numbered and timed), the commands they cause, and the state after them."""

    records: tuple[EventRecord, ...]
    commands: tuple[OutgoingCommand, ...]
    state: SagaState


@dataclass
class _Draft:
    """The decision being built: each event is folded at once so later choices see it."""

    definition: SagaDefinition
    state: SagaState | None
    now: datetime
    new_id: NewId
    causation_id: str | None
    records: list[EventRecord] = field(default_factory=list)
    commands: list[OutgoingCommand] = field(default_factory=list)

    @property
    def current(self) -> SagaState:
        """The state after the events emitted so far."""
        assert self.state is not None, "SagaStarted comes first"
        return self.state

    def emit(self, event: Event) -> None:
        """Number, time and fold one event into the draft."""
        seq = 1 if self.state is None else self.state.version + 1
        record = EventRecord(seq=seq, at=self.now, event=event)
        self.state = evolve(self.state, record)
        self.records.append(record)

    def request(self, step: StepDefinition, action: Action) -> None:
        """Emit StepRequested and queue the step's command (or compensation)."""
        state = self.current
        builder = step.command if action == "execute" else step.compensation
        assert builder is not None, f"step {step.name} has no compensation"
        command = builder(state)
        envelope = Envelope(
            message_id=self.new_id(),
            saga_id=state.saga_id,
            correlation_id=state.saga_id,
            causation_id=self.causation_id,
            type=type(command).__name__,
            sent_at=self.now,
            payload=command.model_dump(mode="json"),
            idempotency_key=f"{state.saga_id}:{step.name}:{action}",
        )
        current = state.step(step.name)
        done = current.attempts if action == "execute" else current.compensation_attempts
        self.emit(
            StepRequested(
                step=step.name,
                action=action,
                participant=step.participant,
                command_id=envelope.message_id,
                command_type=envelope.type,
                attempt=done + 1,
            )
        )
        self.commands.append(OutgoingCommand(participant=step.participant, envelope=envelope))

    def advance(self, after: int) -> None:
        """Request the next step whose condition holds, or complete the saga."""
        for step in self.definition.steps[after + 1 :]:
            if step.condition(self.current):
                self.request(step, "execute")
                return
            self.emit(StepSkipped(step=step.name))
        self.emit(SagaCompleted())

    def compensate_next(self) -> None:
        """Undo the latest step that took (or may have taken) effect, or end the saga.

        A compensation that fails does not stop the others: the saga undoes all it
        can, then ends `failed` naming every compensation that could not be done.
        """
        state = self.current
        for step in reversed(self.definition.steps):
            current = state.step(step.name)
            took_effect = current.status == "succeeded" or (
                current.status == "failed" and current.effect_unknown
            )
            if step.compensation is not None and took_effect:
                self.request(step, "compensate")
                return
        failures = [s for s in state.steps if s.status == "compensation_failed"]
        if failures:
            reasons = "; ".join(f"compensation of {s.name} failed: {s.reason}" for s in failures)
            self.emit(SagaFailed(reason=reasons))
        else:
            self.emit(SagaCompensated(reason=state.reason or "compensated"))

    def decision(self) -> Decision:
        """The finished decision."""
        return Decision(
            records=tuple(self.records), commands=tuple(self.commands), state=self.current
        )


def start_saga(
    definition: SagaDefinition,
    *,
    saga_id: str,
    customer: str,
    saga_input: BaseModel,
    now: datetime,
    new_id: NewId,
) -> Decision:
    """Begin a saga: SagaStarted, then the first step that applies."""
    draft = _Draft(definition, None, now, new_id, causation_id=None)
    draft.emit(
        SagaStarted(
            saga_id=saga_id,
            saga_type=definition.name,
            definition_version=definition.version,
            steps=[s.name for s in definition.steps],
            customer=customer,
            input=saga_input.model_dump(mode="json"),
        )
    )
    draft.advance(after=-1)
    return draft.decision()


def decide(
    definition: SagaDefinition,
    state: SagaState,
    reply: ReplyReceived,
    *,
    now: datetime,
    new_id: NewId,
) -> Decision:
    """Everything the saga does in answer to one reply."""
    draft = _Draft(definition, state, now, new_id, causation_id=reply.message_id)
    pending = state.pending.get(reply.causation_id or "")
    if pending is None:
        why = "saga_terminal" if state.terminal else "not_awaited"
        draft.emit(
            ReplyIgnored(
                reply_id=reply.message_id,
                reply_type=reply.type,
                causation_id=reply.causation_id,
                why=why,
            )
        )
        return draft.decision()

    step = definition.step(pending.step)
    executing = pending.action == "execute"
    expected = step.success if executing else step.compensated
    assert expected is not None, f"step {step.name} has no compensation"
    outcome = _read_reply(reply, expected)
    if isinstance(outcome, CommandFailed):
        if executing:
            draft.emit(
                StepFailed(
                    step=step.name,
                    reply_id=reply.message_id,
                    reason=outcome.reason,
                    detail=outcome.detail,
                    effect_unknown=outcome.reason == PROTOCOL_ERROR,
                )
            )
            draft.emit(CompensationStarted(reason=outcome.reason, failed_step=step.name))
        else:
            draft.emit(
                CompensationFailed(
                    step=step.name,
                    reply_id=reply.message_id,
                    reason=outcome.reason,
                    detail=outcome.detail,
                )
            )
        draft.compensate_next()
    elif executing:
        draft.emit(StepSucceeded(step=step.name, reply_id=reply.message_id, result=outcome))
        draft.advance(after=definition.index(step.name))
    else:
        draft.emit(StepCompensated(step=step.name, reply_id=reply.message_id, result=outcome))
        draft.compensate_next()
    return draft.decision()


def _read_reply(reply: ReplyReceived, expected: type[BaseModel]) -> CommandFailed | dict[str, Any]:
    """The reply's outcome: the failure it reports, or the validated result payload.

    A reply of the wrong type or shape is a participant's protocol error: it is a
    failure of the step, never a success taken on trust.
    """
    try:
        if reply.type == CommandFailed.__name__:
            return CommandFailed.model_validate(reply.payload)
        if reply.type == expected.__name__:
            return expected.model_validate(reply.payload).model_dump(mode="json")
    except ValidationError as exc:
        return CommandFailed(reason=PROTOCOL_ERROR, detail=f"malformed {reply.type}: {exc}"[:1000])
    return CommandFailed(
        reason=PROTOCOL_ERROR, detail=f"expected {expected.__name__}, got {reply.type}"
    )
