"""decide: everything a saga does next, as data (events, commands, timers). No I/O, no clock."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from contracts.envelope import Envelope, traceparent
from contracts.messages import CommandFailed
from contracts.topology import Participant
from saga.core.definition import BuildError, CheckedInput, SagaDefinition, StepDefinition
from saga.core.events import (
    Action,
    AttemptFailed,
    CancelRequested,
    CompensationFailed,
    CompensationStarted,
    Event,
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
from saga.core.policy import backoff_delay
from saga.core.reasons import (
    ABANDONED,
    CANCELLED,
    EARLIER_TRY_TRANSIENT,
    INVALID_STEP_INPUT,
    NOT_AWAITED,
    PROTOCOL_ERROR,
    SAGA_ENDED,
    TIMEOUT,
)
from saga.core.replay import irreversible, past_pivot_reason, replay_plan
from saga.core.state import PendingCommand, SagaState, evolve

NewId = Callable[[], str]
Random = Callable[[], float]
# A step in one of these states may still change: its stage is not done.
_UNSETTLED = frozenset({"running", "compensating"})


class Timer(BaseModel):
    """A moment at which the saga wants to be woken: a command's timeout, or a retry."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timer_id: str
    saga_id: str
    due_at: datetime
    kind: Literal["timeout", "retry"]
    step: str
    action: Action
    attempt: int
    command_id: str | None = None
    # The saga's version once the event that set this timer is stored: a timer met on a
    # younger state is not stale, its decision is merely not stored yet.
    version: int = 0


@dataclass(frozen=True)
class ReplyReceived:
    """A participant's reply, as the orchestrator received it."""

    message_id: str
    causation_id: str | None
    type: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class TimerFired:
    """A timer came due."""

    timer: Timer


@dataclass(frozen=True)
class CancelSaga:
    """Someone asked the saga to stop and undo what it did."""

    by: str


@dataclass(frozen=True)
class ReplaySaga:
    """An operator resumes a failed saga after fixing the cause."""

    by: str


SagaInput = ReplyReceived | TimerFired | CancelSaga | ReplaySaga


@dataclass(frozen=True)
class OutgoingCommand:
    """A command to publish to a participant once the decision is stored."""

    participant: Participant
    envelope: Envelope


@dataclass(frozen=True)
class Decision:
    """New events (numbered and timed), the commands and timers they cause, the new state.

    A decision with no records changes nothing (a timer that is no longer wanted, a
    cancel of a saga that is already undoing itself).
    """

    records: tuple[EventRecord, ...]
    commands: tuple[OutgoingCommand, ...]
    timers: tuple[Timer, ...]
    state: SagaState
    # Timeouts of commands no longer awaited: the store forgets them rather than let
    # them fire for nothing.
    cancelled_timers: tuple[str, ...] = ()


@dataclass
class _Draft:
    """The decision being built: each event is folded at once so later choices see it."""

    definition: SagaDefinition
    state: SagaState | None
    now: datetime
    new_id: NewId
    rng: Random
    causation_id: str | None
    records: list[EventRecord] = field(default_factory=list)
    commands: list[OutgoingCommand] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    # The commands awaited before this decision: those it resolves lose their timeouts.
    awaited: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.awaited = tuple(self.state.pending) if self.state is not None else ()

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
        """Emit StepRequested, queue the step's command (or compensation) and its timeout.

        A command that cannot be built for this saga is never sent: the step (or its
        compensation) fails at once, as if its participant had refused it.
        """
        state = self.current
        builder = step.command if action == "execute" else step.compensation
        assert builder is not None, f"step {step.name} has no compensation"
        try:
            command = builder(state)
        except BuildError as exc:
            failure = CommandFailed(reason=INVALID_STEP_INPUT, detail=str(exc)[:1000])
            if action == "execute":
                self.fail_step(step, failure, effect_unknown=False)
            else:
                self.fail_compensation(step, failure)
            return
        envelope = Envelope(
            message_id=self.new_id(),
            saga_id=state.saga_id,
            correlation_id=state.saga_id,
            causation_id=self.causation_id,
            type=command.type,
            sent_at=self.now,
            payload=command.payload,
            idempotency_key=idempotency_key(state, step.name, action),
            traceparent=traceparent(state.trace_id, self.new_id()[:16]) if state.trace_id else None,
        )
        attempt = _attempts(state, step.name, action) + 1
        self.emit(
            StepRequested(
                step=step.name,
                action=action,
                participant=step.participant,
                command_id=envelope.message_id,
                command_type=envelope.type,
                attempt=attempt,
            )
        )
        self.commands.append(OutgoingCommand(participant=step.participant, envelope=envelope))
        self.timers.append(
            Timer(
                timer_id=timeout_timer_id(envelope.message_id),
                saga_id=state.saga_id,
                due_at=self.now + step.timeout,
                kind="timeout",
                step=step.name,
                action=action,
                attempt=attempt,
                command_id=envelope.message_id,
                version=self.current.version,
            )
        )

    def advance(self, after: int) -> None:
        """Begin the next stage after stage `after`: request each of its steps whose
        condition holds (all at once, for a parallel group), skip the others; a stage
        with nothing to do is passed over, and past the last one the saga completes."""
        for index in range(after + 1, len(self.definition.stages)):
            if self.begin_stage(index):
                return
        self.emit(SagaCompleted())

    def begin_stage(self, index: int, *, ask: frozenset[str] = frozenset()) -> bool:
        """Request each step of the stage not done yet whose condition holds (those in
        `ask` without looking at it again: it held when they were first requested), skip
        the others. Whether anything of the stage is under way now (or the saga stopped
        going forward: a condition or command could not be made)."""
        for step in self.definition.stage(index):
            if self.current.step(step.name).status in ("succeeded", "skipped"):
                continue
            if step.name not in ask:
                try:
                    applies = step.condition(self.current)
                except BuildError as exc:
                    failure = CommandFailed(reason=INVALID_STEP_INPUT, detail=str(exc)[:1000])
                    self.fail_step(step, failure, effect_unknown=False)
                    return True
                if not applies:
                    self.emit(StepSkipped(step=step.name))
                    continue
            self.request(step, "execute")
            if self.current.status != "running":
                return True  # its command could not be built: the saga stopped
        stage = self.definition.stages[index]
        return any(self.current.step(n).status not in ("succeeded", "skipped") for n in stage)

    def joined(self, step: StepDefinition) -> None:
        """A step succeeded: once every step of its stage has, go on to the next stage."""
        index = self.definition.stage_of(step.name)
        siblings = self.definition.stages[index]
        if all(self.current.step(n).status in ("succeeded", "skipped") for n in siblings):
            self.advance(after=index)

    def fail_step(
        self,
        step: StepDefinition,
        failure: CommandFailed,
        *,
        effect_unknown: bool,
        reply_id: str | None = None,
    ) -> None:
        """The step did not succeed: undo the saga (or, if it is being undone already,
        because a step beside this one failed, go on undoing it). A step one of whose
        tries may have taken effect is compensated, whatever the last try answered.

        Past the pivot nothing is undone: once a step that cannot be undone has (or may
        have) taken effect, undoing the steps before it would leave the saga half done
        without saying so. The saga fails instead, for a human to finish.
        """
        current = self.current.step(step.name)
        # Asked again by a replay, the participant's own refusal (a reply) settles whether
        # the step took effect, unless a try of this round may have worked meanwhile.
        settled_by_answer = reply_id is not None and current.asked
        self.emit(
            StepFailed(
                step=step.name,
                reply_id=reply_id,
                reason=failure.reason,
                detail=failure.detail,
                effect_unknown=effect_unknown or (current.effect_unknown and not settled_by_answer),
            )
        )
        running = self.current.status == "running"
        if running and irreversible(self.definition, self.current):
            reason = past_pivot_reason(
                self.definition,
                self.current,
                failed=step.name,
                reason=failure.reason,
                answer_unclear=effect_unknown,
            )
            self.emit(SagaFailed(reason=reason))
            return
        if running:  # the first failure: undo the saga
            self.emit(CompensationStarted(reason=failure.reason, failed_step=step.name))
        self.compensate_next()

    def fail_compensation(
        self, step: StepDefinition, failure: CommandFailed, *, reply_id: str | None = None
    ) -> None:
        """A compensation could not be done: record it and go on undoing the rest."""
        self.emit(
            CompensationFailed(
                step=step.name, reply_id=reply_id, reason=failure.reason, detail=failure.detail
            )
        )
        self.compensate_next()

    def retry_or_give_up(
        self, step: StepDefinition, action: Action, failure: CommandFailed, *, effect_unknown: bool
    ) -> None:
        """After a timeout or a transient failure: try again later, or give the action up."""
        executing = action == "execute"
        policy = step.retry if executing else step.compensation_retry
        attempts = _attempts(self.current, step.name, action)
        # A step past the pivot (it has no compensation) cannot be given up on: the saga
        # could not undo it, so it is tried until it answers.
        keep_trying = executing and step.compensation is None
        undoing = executing and self.current.status != "running"
        if undoing and not keep_trying:
            # A step beside it failed meanwhile: this one is not tried again but undone.
            self.fail_step(step, failure, effect_unknown=effect_unknown)
        elif attempts < policy.max_attempts or keep_trying:
            due_at = self.now + backoff_delay(policy, attempts, self.rng())
            timer_id = self.new_id()
            self.emit(
                RetryScheduled(
                    step=step.name,
                    action=action,
                    attempt=attempts + 1,
                    due_at=due_at,
                    timer_id=timer_id,
                    why=failure.reason,
                )
            )
            self.timers.append(
                Timer(
                    timer_id=timer_id,
                    saga_id=self.current.saga_id,
                    due_at=due_at,
                    kind="retry",
                    step=step.name,
                    action=action,
                    attempt=attempts + 1,
                    version=self.current.version,
                )
            )
        elif executing:
            self.fail_step(step, failure, effect_unknown=effect_unknown)
        else:
            self.fail_compensation(step, failure)

    def compensate_next(self) -> None:
        """Undo the latest stage that took (or may have taken) effect, or end the saga.

        Stages are undone in reverse order; the steps of one stage are undone at once.
        A step of the stage still waiting for a retry is given up (its last attempt
        may have taken effect, so it is undone too); one whose command is still out is
        waited for: its reply, or its timeout, says whether to undo it. A compensation
        that fails does not stop the others: the saga undoes all it can, then ends
        `failed` naming every compensation that could not be done.
        """
        for index in reversed(range(len(self.definition.stages))):
            stage = self.definition.stage(index)
            for step in stage:
                current = self.current.step(step.name)
                if current.status == "running" and not self._awaited(step):
                    # Its last try may have worked, if that try timed out (the fold knows).
                    unknown = current.effect_unknown
                    self.emit(StepFailed(step=step.name, reason=ABANDONED, effect_unknown=unknown))
            for step in stage:
                current = self.current.step(step.name)
                took_effect = current.status == "succeeded" or (
                    current.status == "failed" and current.effect_unknown
                )
                if step.compensation is not None and took_effect:
                    self.request(step, "compensate")
            if any(self.current.step(s.name).status in _UNSETTLED for s in stage):
                return  # the rest of this stage first
        state = self.current
        failures = [s for s in state.steps if s.status == "compensation_failed"]
        if failures:
            reasons = "; ".join(f"compensation of {s.name} failed: {s.reason}" for s in failures)
            self.emit(SagaFailed(reason=reasons))
        else:
            self.emit(SagaCompensated(reason=state.compensation_reason or "compensated"))

    def _awaited(self, step: StepDefinition) -> bool:
        return any(p.step == step.name for p in self.current.pending.values())

    def decision(self) -> Decision:
        """The finished decision."""
        return Decision(
            records=tuple(self.records),
            commands=tuple(self.commands),
            timers=tuple(self.timers),
            state=self.current,
            cancelled_timers=tuple(
                timeout_timer_id(c) for c in self.awaited if c not in self.current.pending
            ),
        )


def timeout_timer_id(command_id: str) -> str:
    """The id of the timer that times out one command."""
    return f"timeout-{command_id}"


def idempotency_key(state: SagaState, step: str, action: Action) -> str:
    """The participant's key for one unit of work: (saga, step, action).

    What a replay tries again after a failure (a compensation, or a step past the pivot
    that was refused) gets a key of its own, `…:replayN`, so a participant that refused
    it before really tries again (its effect is still guarded by its own per-saga
    records); what a replay asks again because its effect is unknown keeps its key.
    """
    replay = state.step(step).execute_replay if action == "execute" else state.replays
    key = f"{state.saga_id}:{step}:{action}"
    return f"{key}:replay{replay}" if replay else key


def _attempts(state: SagaState, step: str, action: Action) -> int:
    current = state.step(step)
    return current.attempts if action == "execute" else current.compensation_attempts


def start_saga(
    definition: SagaDefinition,
    *,
    saga_id: str,
    customer: str,
    saga_input: Mapping[str, Any] | CheckedInput,
    now: datetime,
    new_id: NewId,
    trace_id: str | None = None,
) -> Decision:
    """Begin a saga: SagaStarted, then the first step that applies.

    Raises InputError if the input does not match the definition's schema (an input
    this definition's check accepted already, a CheckedInput, is not checked again).

    `trace_id` (W3C) ties every command and reply of the saga to the request that began it.
    """
    draft = _Draft(definition, None, now, new_id, rng=lambda: 0.0, causation_id=None)
    draft.emit(
        SagaStarted(
            saga_id=saga_id,
            saga_type=definition.name,
            definition_version=definition.version,
            steps=[s.name for s in definition.steps],
            customer=customer,
            input=definition.input_of(saga_input),
            trace_id=trace_id,
        )
    )
    draft.advance(after=-1)
    return draft.decision()


def decide(
    definition: SagaDefinition,
    state: SagaState,
    saga_input: SagaInput,
    *,
    now: datetime,
    new_id: NewId,
    rng: Random,
) -> Decision:
    """Everything the saga does in answer to one input. `rng` gives numbers in [0, 1)."""
    causation = saga_input.message_id if isinstance(saga_input, ReplyReceived) else None
    draft = _Draft(definition, state, now, new_id, rng, causation_id=causation)
    match saga_input:
        case ReplyReceived():
            _on_reply(draft, saga_input)
        case TimerFired(timer=timer):
            _on_timer(draft, timer)
        case CancelSaga(by=by):
            _on_cancel(draft, by)
        case ReplaySaga(by=by):
            _on_replay(draft, by)
    return draft.decision()


def _on_replay(draft: _Draft, by: str) -> None:
    """Resume a failed saga the one way its failure allows (see ReplayPlan)."""
    plan = replay_plan(draft.definition, draft.current)
    if plan is None:
        return
    draft.emit(
        SagaReplayed(by=by, direction=plan.direction, ask=list(plan.ask), retry=list(plan.retry))
    )
    if plan.direction == "undo":
        draft.compensate_next()
        return
    # Forward again from the stage the saga stopped in: what it asks, what it tries again,
    # and any step beside them not yet begun.
    index = min(draft.definition.stage_of(n) for n in (*plan.ask, *plan.retry))
    if not draft.begin_stage(index, ask=frozenset(plan.ask)):
        draft.advance(after=index)


def _on_reply(draft: _Draft, reply: ReplyReceived) -> None:
    state = draft.current
    causation = reply.causation_id or ""
    pending = state.pending.get(causation) or _earlier_try(state, causation)
    if pending is None:
        _ignore(draft, reply, SAGA_ENDED if state.terminal else NOT_AWAITED)
        return
    step = draft.definition.step(pending.step)
    executing = pending.action == "execute"
    expected = step.success if executing else step.compensated
    assert expected is not None, f"step {step.name} has no compensation"
    model = step.success_model if executing else step.compensated_model
    outcome = _read_reply(reply, expected, model)
    if causation not in state.pending and isinstance(outcome, CommandFailed) and outcome.transient:
        # An earlier try that failed for now: the try awaited now, or its retry, answers.
        _ignore(draft, reply, EARLIER_TRY_TRANSIENT)
        return
    if isinstance(outcome, CommandFailed):
        if outcome.transient:
            draft.emit(
                AttemptFailed(
                    step=step.name,
                    action=pending.action,
                    command_id=reply.causation_id or "",
                    reply_id=reply.message_id,
                    reason=outcome.reason,
                    detail=outcome.detail,
                    effect_unknown=outcome.effect_unknown,
                )
            )
            draft.retry_or_give_up(
                step, pending.action, outcome, effect_unknown=outcome.effect_unknown
            )
        elif executing:
            # A reply that broke the protocol leaves the step's effect unknown.
            unknown = outcome.reason == PROTOCOL_ERROR or outcome.effect_unknown
            draft.fail_step(step, outcome, effect_unknown=unknown, reply_id=reply.message_id)
        else:
            draft.fail_compensation(step, outcome, reply_id=reply.message_id)
    elif executing:
        draft.emit(StepSucceeded(step=step.name, reply_id=reply.message_id, result=outcome))
        if draft.current.status == "running":
            draft.joined(step)
        else:
            draft.compensate_next()  # a late success, in a saga being undone: undo it too
    else:
        draft.emit(StepCompensated(step=step.name, reply_id=reply.message_id, result=outcome))
        draft.compensate_next()


def _earlier_try(state: SagaState, command_id: str) -> PendingCommand | None:
    """An earlier try of a step that still awaits an answer under that try's key."""
    earlier = state.superseded.get(command_id)
    if earlier is None or state.terminal:
        return None
    awaiting = "running" if earlier.action == "execute" else "compensating"
    return earlier if state.step(earlier.step).status == awaiting else None


def _ignore(draft: _Draft, reply: ReplyReceived, why: str) -> None:
    draft.emit(
        ReplyIgnored(
            reply_id=reply.message_id,
            reply_type=reply.type,
            causation_id=reply.causation_id,
            why=why,
        )
    )


def _on_timer(draft: _Draft, timer: Timer) -> None:
    """A timer the saga still wants acts; any other is stale and changes nothing."""
    state = draft.current
    step = draft.definition.step(timer.step)
    if timer.kind == "timeout":
        pending = state.pending.get(timer.command_id or "")
        if pending is None:
            return
        draft.emit(
            StepTimedOut(
                step=step.name,
                action=pending.action,
                command_id=timer.command_id or "",
                attempt=timer.attempt,
            )
        )
        failure = CommandFailed(reason=TIMEOUT, detail=f"no reply within {step.timeout}")
        # Nobody knows whether a command that got no reply took effect.
        draft.retry_or_give_up(step, pending.action, failure, effect_unknown=True)
    elif timer.timer_id in state.retries:
        draft.request(step, state.retries[timer.timer_id].action)


def _on_cancel(draft: _Draft, by: str) -> None:
    """Stop a running saga: every step that may have taken effect is undone."""
    state = draft.current
    if not cancellable(draft.definition, state):
        return
    draft.emit(CancelRequested(by=by))
    out = {p.step for p in state.pending.values()}
    waiting = {r.step for r in state.retries.values()}
    for step in state.steps:
        if step.name in out or step.name in waiting:
            # A command still out may be done after this: compensate it to be sure (the
            # participant remembers the compensation and refuses the late command). A step
            # waiting for a retry is undone only if one of its tries may have worked.
            unknown = step.name in out or step.effect_unknown
            draft.emit(StepFailed(step=step.name, reason=CANCELLED, effect_unknown=unknown))
    draft.emit(CompensationStarted(reason=CANCELLED))
    draft.compensate_next()


def cancellable(definition: SagaDefinition, state: SagaState) -> bool:
    """A saga can be cancelled while it runs and has not begun a step it cannot undo."""
    if state.status != "running":
        return False
    return all(
        definition.step(s.name).compensation is not None
        for s in state.steps
        if s.status not in ("pending", "skipped")
    )


def _read_reply(
    reply: ReplyReceived, expected: str, contract: type[BaseModel] | None
) -> CommandFailed | dict[str, Any]:
    """The reply's outcome: the failure it reports, or the result payload (validated by
    `contract`, the model the participant's registered contract gives the reply, if any).

    A reply of the wrong type or shape is a participant's protocol error: it is a
    failure of the step, never a success taken on trust.
    """
    try:
        if reply.type == CommandFailed.__name__:
            return CommandFailed.model_validate(reply.payload)
        if reply.type == expected:
            if contract is None:
                return dict(reply.payload)
            return contract.model_validate(reply.payload).model_dump(mode="json")
    except ValidationError as exc:
        return CommandFailed(reason=PROTOCOL_ERROR, detail=f"malformed {reply.type}: {exc}"[:1000])
    return CommandFailed(reason=PROTOCOL_ERROR, detail=f"expected {expected}, got {reply.type}")
