"""What the console shows of a saga in a list: pure functions of its state and the time."""

from dataclasses import dataclass
from datetime import datetime

from saga.console.timeline_chart import duration_words
from saga.core.state import SagaState

_DONE = frozenset({"succeeded", "skipped"})


@dataclass(frozen=True)
class SagaRow:
    """One row of the sagas list."""

    saga_id: str
    saga_type: str
    version: int
    status: str
    customer: str
    steps_done: int
    steps: int
    age: str
    duration: str


def saga_row(state: SagaState, now: datetime) -> SagaRow:
    """A saga as a row: its steps done of all, how long ago it started, how long it ran."""
    ended = state.updated_at if state.terminal else now
    return SagaRow(
        saga_id=state.saga_id,
        saga_type=state.saga_type,
        version=state.definition_version,
        status=state.status,
        customer=state.customer,
        steps_done=sum(1 for s in state.steps if s.status in _DONE),
        steps=len(state.steps),
        age=duration_words(now - state.created_at),
        duration=duration_words(ended - state.created_at),
    )
