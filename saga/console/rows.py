"""What the console shows of a saga in a list: pure functions of its state and the time."""

from dataclasses import dataclass
from datetime import datetime

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
        age=span((now - state.created_at).total_seconds()),
        duration=span((ended - state.created_at).total_seconds()),
    )


def span(seconds: float) -> str:
    """A length of time for people: `850 ms`, `12 s`, `4 min`, `3 h`, `2 d`."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"
