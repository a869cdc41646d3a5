"""A saga's state and the fold that rebuilds it from its events."""

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from saga.core.events import (
    Action,
    AttemptFailed,
    CancelRequested,
    CompensationFailed,
    CompensationStarted,
    EventRecord,
    ReplyIgnored,
    RetryScheduled,
    SagaCompensated,
    SagaCompleted,
    SagaFailed,
    SagaReplayed,
    SagaStarted,
    StepCompensated,
    StepFailed,
    StepRequested,
    StepSkipped,
    StepSucceeded,
    StepTimedOut,
)
from saga.core.schema import SNAPSHOT_SCHEMA, known_version

SagaStatus = Literal["running", "compensating", "completed", "compensated", "failed"]
StepStatus = Literal[
    "pending",
    "running",
    "succeeded",
    "failed",
    "skipped",
    "compensating",
    "compensated",
    "compensation_failed",
]
TERMINAL: frozenset[SagaStatus] = frozenset({"completed", "compensated", "failed"})


class StepState(BaseModel):
    """Where one step stands: its execution, its compensation, what is known of its effect."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    status: StepStatus = "pending"
    attempts: int = 0
    compensation_attempts: int = 0
    effect_unknown: bool = False
    started_at: datetime | None = None
    ended_at: datetime | None = None
    compensation_started_at: datetime | None = None
    compensation_ended_at: datetime | None = None
    reason: str | None = None
    # The replay whose fresh idempotency key the step's command carries now (0: its first
    # key). A compensation's key follows the saga's replays instead.
    execute_replay: int = 0
    # A replay asked the step again, its effect unknown: a clear refusal now says it did
    # not take effect, unless a try of this round may have worked.
    asked: bool = False


class PendingCommand(BaseModel):
    """A command the saga sent and whose reply it awaits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: str
    action: Action
    command_type: str


class ScheduledRetry(BaseModel):
    """A retry the saga waits to make (its timer is in the timer store)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: str
    action: Action
    attempt: int


class SagaState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # The snapshot's shape (saga.core.schema): not written while it is 1.
    schema_version: int = Field(default=SNAPSHOT_SCHEMA, ge=1, exclude=True)

    saga_id: str
    saga_type: str
    definition_version: int
    version: int
    status: SagaStatus
    customer: str
    input: dict[str, Any]
    trace_id: str | None = None
    results: dict[str, dict[str, Any]] = {}
    steps: tuple[StepState, ...]
    pending: dict[str, PendingCommand] = {}
    # Earlier tries of a step under its current idempotency key (timed out, failed for
    # now, or still out when the saga failed): the participant answers every try of a key
    # alike, so while the step awaits that key a late answer to one of them is its answer.
    superseded: dict[str, PendingCommand] = {}
    retries: dict[str, ScheduledRetry] = {}
    reason: str | None = None
    compensation_reason: str | None = None
    replays: int = 0
    failed_step: str | None = None
    created_at: datetime
    updated_at: datetime

    @model_validator(mode="before")
    @classmethod
    def _known(cls, data: Any) -> Any:
        return known_version(data, what="a saga state snapshot", reads=SNAPSHOT_SCHEMA)

    @property
    def terminal(self) -> bool:
        """Completed, compensated or failed: nothing more will happen."""
        return self.status in TERMINAL

    def step(self, name: str) -> StepState:
        """The state of the named step."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"saga {self.saga_id} has no step {name!r}")


class FoldError(ValueError):
    """The log cannot be folded: it does not begin with SagaStarted, or skips a number."""


def _with_step(state: SagaState, name: str, **changes: Any) -> tuple[StepState, ...]:
    return tuple(s.model_copy(update=changes) if s.name == name else s for s in state.steps)


def evolve(state: SagaState | None, record: EventRecord) -> SagaState:
    """Apply one event to the state; the first event must be SagaStarted."""
    event, at = record.event, record.at
    if state is None:
        if not isinstance(event, SagaStarted) or record.seq != 1:
            raise FoldError("a saga's log must begin with SagaStarted at seq 1")
        return SagaState(
            saga_id=event.saga_id,
            saga_type=event.saga_type,
            definition_version=event.definition_version,
            version=1,
            status="running",
            customer=event.customer,
            input=event.input,
            trace_id=event.trace_id,
            steps=tuple(StepState(name=n) for n in event.steps),
            created_at=at,
            updated_at=at,
        )
    saga_id = state.saga_id
    if record.seq != state.version + 1:
        raise FoldError(f"saga {saga_id}: event {record.seq} follows version {state.version}")
    changes: dict[str, Any] = {"version": record.seq, "updated_at": at}
    match event:
        case SagaStarted():
            raise FoldError(f"saga {saga_id}: SagaStarted at seq {record.seq}")
        case StepRequested(step=step, action="execute"):
            previous = state.step(step)
            changes["steps"] = _with_step(
                state,
                step,
                status="running",
                attempts=previous.attempts + 1,
                started_at=previous.started_at if previous.attempts else at,
                ended_at=None,
            )
            changes["pending"] = _with_pending(state, event)
            changes["retries"] = _without_retry(state, step, "execute")
        case StepRequested(step=step, action="compensate"):
            previous = state.step(step)
            changes["steps"] = _with_step(
                state,
                step,
                status="compensating",
                compensation_attempts=previous.compensation_attempts + 1,
                compensation_started_at=(
                    previous.compensation_started_at if previous.compensation_attempts else at
                ),
                compensation_ended_at=None,
            )
            changes["pending"] = _with_pending(state, event)
            changes["retries"] = _without_retry(state, step, "compensate")
        case StepSkipped(step=step):
            changes["steps"] = _with_step(state, step, status="skipped", ended_at=at)
        case StepSucceeded(step=step, result=result):
            changes["steps"] = _with_step(state, step, status="succeeded", ended_at=at, asked=False)
            changes["results"] = {**state.results, step: result}
            changes.update(_settled(state, step, "execute"))
        case StepFailed(step=step, reason=reason, effect_unknown=unknown):
            changes["steps"] = _with_step(
                state,
                step,
                status="failed",
                ended_at=at,
                reason=reason,
                effect_unknown=unknown,
                asked=False,
            )
            if unknown:
                # A replay may ask it again: an answer to any of its tries will do then.
                changes["pending"] = _without_step(state, step)
                changes["superseded"] = _superseded(state, _of_step(state.pending, step))
                changes["retries"] = _without_retry(state, step, "execute")
            else:
                changes.update(_settled(state, step, "execute"))
        case StepTimedOut(command_id=command_id) | AttemptFailed(command_id=command_id):
            changes["pending"] = {c: p for c, p in state.pending.items() if c != command_id}
            changes["superseded"] = _superseded(
                state, {c: p for c, p in state.pending.items() if c == command_id}
            )
            unknown = isinstance(event, StepTimedOut) or event.effect_unknown
            if unknown and event.action == "execute":
                # One try that may have worked is enough: if the step is given up, it
                # is compensated, whatever the later tries answered.
                changes["steps"] = _with_step(state, event.step, effect_unknown=True, asked=False)
        case RetryScheduled(step=step, action=action, attempt=attempt, timer_id=timer_id):
            retry = ScheduledRetry(step=step, action=action, attempt=attempt)
            changes["retries"] = {**state.retries, timer_id: retry}
        case CancelRequested():
            pass
        case CompensationStarted(reason=reason, failed_step=failed_step):
            changes.update(
                status="compensating",
                reason=reason,
                compensation_reason=reason,
                failed_step=failed_step,
            )
        case StepCompensated(step=step):
            changes["steps"] = _with_step(
                state, step, status="compensated", compensation_ended_at=at
            )
            changes.update(_settled(state, step, "compensate"))
        case CompensationFailed(step=step, reason=reason):
            changes["steps"] = _with_step(
                state, step, status="compensation_failed", compensation_ended_at=at, reason=reason
            )
            changes.update(_settled(state, step, "compensate"))
        case ReplyIgnored():
            pass
        case SagaCompleted():
            changes.update(status="completed", pending={}, superseded={}, retries={})
        case SagaCompensated(reason=reason):
            changes.update(
                status="compensated", reason=reason, pending={}, superseded={}, retries={}
            )
        case SagaFailed(reason=reason):
            # A replay may ask the steps still out again: their tries stay known.
            changes.update(
                status="failed",
                reason=reason,
                pending={},
                superseded=_superseded(state, state.pending),
                retries={},
            )
        case SagaReplayed(direction="undo", retry=retry):
            # The compensations that failed are due again, with a fresh budget (and key).
            again = set(retry) or {s.name for s in state.steps if s.status == "compensation_failed"}
            changes["steps"] = tuple(
                s.model_copy(
                    update={
                        "status": "failed" if s.effect_unknown else "succeeded",
                        "compensation_attempts": 0,
                    }
                )
                if s.name in again
                else s
                for s in state.steps
            )
            changes.update(
                status="compensating",
                reason=state.compensation_reason,
                replays=state.replays + 1,
            )
        case SagaReplayed(direction="finish", ask=ask, retry=retry):
            # Going forward again: an asked step's answer will say whether it took effect;
            # a retried one gets a key of its own, so its earlier tries no longer count.
            replay = state.replays + 1
            changes["steps"] = tuple(
                s.model_copy(update={"asked": True})
                if s.name in ask
                else s.model_copy(update={"execute_replay": replay})
                if s.name in retry
                else s
                for s in state.steps
            )
            changes["superseded"] = {
                c: p for c, p in state.superseded.items() if p.step not in retry
            }
            changes.update(
                status="running",
                reason=None,
                compensation_reason=None,
                failed_step=None,
                replays=replay,
            )
    return state.model_copy(update=changes)


# How many earlier tries of one step are remembered, the first ones and the latest ones
# (a participant that answers as it did the first time names the first try it saw): a
# step past the pivot is tried until it answers, and its snapshot must not grow with it.
MAX_SUPERSEDED = 8


def _with_pending(state: SagaState, event: StepRequested) -> dict[str, PendingCommand]:
    pending = PendingCommand(step=event.step, action=event.action, command_type=event.command_type)
    return {**state.pending, event.command_id: pending}


def _without_retry(state: SagaState, step: str, action: Action) -> dict[str, ScheduledRetry]:
    return {t: r for t, r in state.retries.items() if not (r.step == step and r.action == action)}


def _without_step(state: SagaState, step: str) -> dict[str, PendingCommand]:
    return {c: p for c, p in state.pending.items() if p.step != step}


def _of_step(commands: dict[str, PendingCommand], step: str) -> dict[str, PendingCommand]:
    return {c: p for c, p in commands.items() if p.step == step}


def _settled(state: SagaState, step: str, action: Action) -> dict[str, Any]:
    """A step's action has its answer: no command, earlier try or retry of it is awaited."""
    return {
        "pending": _without_step(state, step),
        "superseded": {c: p for c, p in state.superseded.items() if p.step != step},
        "retries": _without_retry(state, step, action),
    }


def _superseded(state: SagaState, tries: dict[str, PendingCommand]) -> dict[str, PendingCommand]:
    """The earlier tries with `tries` added, at most MAX_SUPERSEDED a step: the first
    half and the latest half are kept."""
    earlier = {**state.superseded, **tries}
    for step in {p.step for p in tries.values()}:
        mine = list(_of_step(earlier, step))
        keep = MAX_SUPERSEDED // 2
        for forgotten in mine[keep:-keep] if len(mine) > MAX_SUPERSEDED else []:
            del earlier[forgotten]
    return earlier


def fold(records: Iterable[EventRecord]) -> SagaState:
    """Rebuild a saga's state from its whole log."""
    state: SagaState | None = None
    for record in records:
        state = evolve(state, record)
    if state is None:
        raise FoldError("a saga's log cannot be empty")
    return state
