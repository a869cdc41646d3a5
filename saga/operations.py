"""Operator actions on one saga, the same from the CLI, the API and the console: cancel
it, replay it, or see what a replay would send. Each is recorded in the saga's history
with who asked."""

from typing import Any

from saga.clock import new_id
from saga.core.decide import CancelSaga, OutgoingCommand, ReplaySaga, cancellable, decide
from saga.core.definition import SagaDefinition
from saga.core.replay import ReplayPlan, replay_plan
from saga.core.state import SagaState
from saga.orchestrator import Orchestrator


class NotCancellable(Exception):
    """The saga cannot be cancelled (any more): the reason says why."""


def not_cancellable(state: SagaState) -> str:
    """Why a saga cannot be cancelled."""
    if state.status != "running":
        return f"saga {state.saga_id} is already {state.status}"
    return f"saga {state.saga_id} has begun a step that cannot be undone; it will complete"


async def cancel(
    orchestrator: Orchestrator, definition: SagaDefinition | None, state: SagaState, *, by: str
) -> None:
    """Stop a running saga: what it did is undone and it ends `compensated`; raises
    NotCancellable if it has ended or begun a step that cannot be undone. Safe to repeat."""
    if definition is None or not cancellable(definition, state):
        raise NotCancellable(not_cancellable(state))
    applied = await orchestrator.apply(
        state.saga_id, CancelSaga(by=by), applied_id=f"cancel:{state.saga_id}"
    )
    if applied.outcome == "nothing_to_do" and applied.state is not None:
        raise NotCancellable(not_cancellable(applied.state))


def replay_preview(definition: SagaDefinition, state: SagaState, *, by: str) -> dict[str, Any]:
    """What replaying a failed saga would do and send, changing nothing."""
    plan = _plan(definition, state)
    decision = decide(
        definition,
        state,
        ReplaySaga(by=by),
        now=state.updated_at,
        new_id=new_id,  # ids of commands that will not be sent
        rng=lambda: 0.0,
    )
    return replay_result(state, plan, decision.commands, published=False, replayed=True)


async def replay(
    orchestrator: Orchestrator, definition: SagaDefinition, state: SagaState, *, by: str
) -> dict[str, Any]:
    """Replay a failed saga (as read at `state`): undo what is left, or past a step that
    cannot be undone, finish it. Not replayed if it moved on since it was read."""
    plan = _plan(definition, state)
    applied = await orchestrator.apply(
        state.saga_id, ReplaySaga(by=by), applied_id=f"replay:{state.saga_id}:{state.version}"
    )
    return replay_result(
        applied.state or state,
        plan,
        applied.commands,
        published=applied.published,
        # Another replay (or anything else) moved the saga on since it was read.
        replayed=applied.outcome == "appended",
    )


def _plan(definition: SagaDefinition, state: SagaState) -> ReplayPlan:
    plan = replay_plan(definition, state)
    if plan is None:
        raise ValueError(f"saga {state.saga_id} is {state.status}, not failed: nothing to replay")
    return plan


def replay_result(
    state: SagaState,
    plan: ReplayPlan,
    commands: tuple[OutgoingCommand, ...],
    *,
    published: bool,
    replayed: bool,
) -> dict[str, Any]:
    """A replay (or its preview) as data: its direction and the commands it sends."""
    return {
        "saga_id": state.saga_id,
        "outcome": "replayed" if replayed else "not_replayed",
        "status": state.status,
        "direction": plan.direction,
        "ask": list(plan.ask),
        "retry": list(plan.retry),
        "published": published and bool(commands),
        "commands": [
            {
                "type": c.envelope.type,
                "participant": c.participant,
                "idempotency_key": c.envelope.idempotency_key,
                "payload": c.envelope.payload,
            }
            for c in commands
        ],
    }
