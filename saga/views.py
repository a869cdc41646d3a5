"""What people see of a saga: the view shared by the HTTP API and the CLI."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from saga.core.definition import SagaDefinition
from saga.core.state import SagaState, SagaStatus, StepStatus


class StepView(BaseModel):
    name: str
    status: StepStatus


class SagaView(BaseModel):
    saga_id: str
    type: str
    definition_version: int
    status: SagaStatus
    reason: str | None
    steps: list[StepView]
    # The definition's summary (what it says to show of a saga); for orders, also as
    # the two fields before it, as the shop's clients read them.
    order_id: str | None
    amount: str | None
    summary: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class EventView(BaseModel):
    seq: int
    type: str
    at: datetime
    data: dict[str, Any]


def saga_view(state: SagaState, definition: SagaDefinition | None) -> SagaView:
    """The saga as customers and operators see it; `reason` only once it did not complete."""
    summary = definition.summarize(state) if definition is not None else {}
    return SagaView(
        saga_id=state.saga_id,
        type=state.saga_type,
        definition_version=state.definition_version,
        status=state.status,
        reason=state.reason if state.status in ("compensated", "failed") else None,
        steps=[StepView(name=s.name, status=s.status) for s in state.steps],
        order_id=summary.get("order_id"),
        amount=summary.get("amount"),
        summary=dict(summary),
        created_at=state.created_at,
        updated_at=state.updated_at,
    )
