"""What people see of sagas and saga types: the views shared by the HTTP API and the CLI."""

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from saga.core.definition import SagaDefinition
from saga.core.document import DefinitionSpec
from saga.core.state import SagaState, SagaStatus, StepStatus
from saga.registry import DefinitionRegistry


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
    # The definition's summary (what its `summary:` says to show of a saga) as it stands.
    summary: dict[str, Any]
    # The summary's values that compensations undid, as they were (not in `summary`).
    undone: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class EventView(BaseModel):
    seq: int
    type: str
    at: datetime
    data: dict[str, Any]


def saga_view(state: SagaState, definition: SagaDefinition | None) -> SagaView:
    """The saga as customers and operators see it; `reason` only once it did not complete."""
    summary, undone = _summary(state, definition)
    return SagaView(
        saga_id=state.saga_id,
        type=state.saga_type,
        definition_version=state.definition_version,
        status=state.status,
        reason=state.reason if state.status in ("compensated", "failed") else None,
        steps=[StepView(name=s.name, status=s.status) for s in state.steps],
        summary=summary,
        undone=undone,
        created_at=state.created_at,
        updated_at=state.updated_at,
    )


def _summary(
    state: SagaState, definition: SagaDefinition | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The summary drawn from the results that stand, and the values only the results
    compensations undid gave (a refunded amount, a cancelled order)."""
    if definition is None:
        return {}, {}
    compensated = {s.name for s in state.steps if s.status == "compensated"}
    standing = state.model_copy(
        update={"results": {k: v for k, v in state.results.items() if k not in compensated}}
    )
    summary = dict(definition.summarize(standing))
    if not compensated:
        return summary, {}
    was = definition.summarize(state)
    undone = {k: v for k, v in was.items() if v is not None and summary.get(k) != v}
    return summary, undone


class DefinitionEntry(BaseModel):
    name: str
    latest: int
    versions: list[int]
    builtin: list[int]
    description: str | None
    # Whether the caller may start sagas of this type (its latest version).
    can_start: bool


async def definition_entries(
    registry: DefinitionRegistry, *, may_start: Callable[[DefinitionSpec], bool]
) -> list[DefinitionEntry]:
    """Every saga type with its versions, its latest's description, and whether
    `may_start` lets the caller start it."""
    listed = []
    for entry in await registry.entries():
        spec = await registry.document(entry.name, entry.latest)
        if spec is None:
            continue  # deleted meanwhile
        listed.append(
            DefinitionEntry(
                name=entry.name,
                latest=entry.latest,
                versions=list(entry.versions),
                builtin=list(entry.builtin),
                description=spec.description,
                can_start=may_start(spec),
            )
        )
    return listed
