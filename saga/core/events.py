"""The saga's domain events: facts in the past tense, the only truth a saga has."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from saga.core.schema import EVENT_SCHEMA, known_version

Action = Literal["execute", "compensate"]


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SagaStarted(Event):
    type: Literal["SagaStarted"] = "SagaStarted"
    saga_id: str
    saga_type: str
    definition_version: int
    steps: list[str]
    customer: str
    input: dict[str, Any]
    trace_id: str | None = None


class StepRequested(Event):
    """A command for a step (or its compensation) was put in the outbox."""

    type: Literal["StepRequested"] = "StepRequested"
    step: str
    action: Action
    participant: str
    command_id: str
    command_type: str
    attempt: int = 1


class StepSkipped(Event):
    """A step's condition did not hold for this saga's input."""

    type: Literal["StepSkipped"] = "StepSkipped"
    step: str


class StepSucceeded(Event):
    type: Literal["StepSucceeded"] = "StepSucceeded"
    step: str
    reply_id: str
    result: dict[str, Any]


class StepFailed(Event):
    """The step did not succeed. `effect_unknown`: it may have taken effect all the same
    (a reply that broke the protocol), so it is compensated like a step that succeeded."""

    type: Literal["StepFailed"] = "StepFailed"
    step: str
    reply_id: str | None = None
    reason: str
    detail: str | None = None
    effect_unknown: bool = False


class StepTimedOut(Event):
    """A command's reply did not come in time; the command is no longer awaited."""

    type: Literal["StepTimedOut"] = "StepTimedOut"
    step: str
    action: Action
    command_id: str
    attempt: int


class AttemptFailed(Event):
    """A participant could not do the command for now (a transient failure);
    `effect_unknown`: it cannot tell whether the command took effect."""

    type: Literal["AttemptFailed"] = "AttemptFailed"
    step: str
    action: Action
    command_id: str
    reply_id: str
    reason: str
    detail: str | None = None
    effect_unknown: bool = False


class RetryScheduled(Event):
    """The step (or its compensation) will be tried again at `due_at`."""

    type: Literal["RetryScheduled"] = "RetryScheduled"
    step: str
    action: Action
    attempt: int
    due_at: datetime
    timer_id: str
    why: str


class CancelRequested(Event):
    type: Literal["CancelRequested"] = "CancelRequested"
    by: str


class CompensationStarted(Event):
    """The saga will not complete: undo what was done. `failed_step` is None on a cancel."""

    type: Literal["CompensationStarted"] = "CompensationStarted"
    reason: str
    failed_step: str | None = None


class StepCompensated(Event):
    type: Literal["StepCompensated"] = "StepCompensated"
    step: str
    reply_id: str
    result: dict[str, Any]


class CompensationFailed(Event):
    type: Literal["CompensationFailed"] = "CompensationFailed"
    step: str
    reply_id: str | None = None
    reason: str
    detail: str | None = None


class ReplyIgnored(Event):
    """A reply arrived for a command the saga no longer awaits; kept for the record."""

    type: Literal["ReplyIgnored"] = "ReplyIgnored"
    reply_id: str
    reply_type: str
    causation_id: str | None
    why: str


class SagaCompleted(Event):
    type: Literal["SagaCompleted"] = "SagaCompleted"


class SagaCompensated(Event):
    """Every completed step was undone; `reason` is why the saga could not complete."""

    type: Literal["SagaCompensated"] = "SagaCompensated"
    reason: str


class SagaFailed(Event):
    """A compensation could not be done: a human must look."""

    type: Literal["SagaFailed"] = "SagaFailed"
    reason: str


class SagaReplayed(Event):
    """An operator resumed a failed saga after fixing the cause.

    `undo`: the saga was being undone and compensations failed; those in `retry` are
    tried again, each under an idempotency key of its own. `finish`: a step that cannot be
    undone has (or may have) taken effect, so the saga can only go forward; the steps in
    `ask`, whose effect is unknown, are asked again under their own idempotency key (the
    participant's answer decides), and those in `retry`, which failed outright, are tried
    again under a new key. Logs written before `direction` existed hold undo replays.
    """

    type: Literal["SagaReplayed"] = "SagaReplayed"
    by: str
    direction: Literal["undo", "finish"] = "undo"
    ask: list[str] = []
    retry: list[str] = []


AnyEvent = Annotated[
    SagaStarted
    | StepRequested
    | StepSkipped
    | StepSucceeded
    | StepFailed
    | StepTimedOut
    | AttemptFailed
    | RetryScheduled
    | CancelRequested
    | CompensationStarted
    | StepCompensated
    | CompensationFailed
    | ReplyIgnored
    | SagaCompleted
    | SagaCompensated
    | SagaFailed
    | SagaReplayed,
    Field(discriminator="type"),
]


class EventRecord(BaseModel):
    """An event as stored in the log: its position, its time and the fact itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The record's shape (saga.core.schema): not written while it is 1.
    schema_version: int = Field(default=EVENT_SCHEMA, ge=1, exclude=True)
    seq: int = Field(ge=1)
    at: datetime
    event: AnyEvent

    @model_validator(mode="before")
    @classmethod
    def _known(cls, data: Any) -> Any:
        return known_version(data, what="a saga event record", reads=EVENT_SCHEMA)

    def to_wire(self) -> dict[str, Any]:
        """The public shape: {seq, type, at, data}, times written as pydantic writes them
        everywhere else (ISO 8601, UTC as Z)."""
        record = self.model_dump(mode="json")
        data = {k: v for k, v in record["event"].items() if k != "type"}
        return {"seq": self.seq, "type": self.event.type, "at": record["at"], "data": data}


_record_adapter: TypeAdapter[EventRecord] = TypeAdapter(EventRecord)


def record_from_json(raw: str | bytes) -> EventRecord:
    """Parse one stored event record."""
    return _record_adapter.validate_json(raw)
