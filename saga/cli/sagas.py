"""The operator's view of sagas: list them, show one with its history and timings."""

from datetime import datetime
from typing import Annotated, Any, cast, get_args

import typer
from redis.asyncio import Redis
from rich.table import Table

from saga.bootstrap import registry_for
from saga.cli.output import CliError, Json, console, print_json, with_redis
from saga.core.events import EventRecord
from saga.core.state import SagaState, SagaStatus
from saga.registry import DefinitionRegistry
from saga.settings import Settings
from saga.store import RedisSagaStore
from saga.views import saga_view, utc_text

_STATUSES = get_args(SagaStatus)


def list_sagas(
    status: Annotated[
        str | None, typer.Option(help=f"Only sagas in this status: {', '.join(_STATUSES)}.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 50,
    json_out: Json = False,
) -> None:
    """List sagas, newest first."""
    if status is not None and status not in _STATUSES:
        raise CliError(f"unknown status {status!r}; one of {', '.join(_STATUSES)}", usage=True)

    async def work(redis: Redis, settings: Settings) -> list[dict[str, Any]] | list[SagaState]:
        states = await RedisSagaStore(redis, settings.namespace).find(status=status, limit=limit)
        if not json_out:
            return states
        registry = registry_for(redis, settings)
        return [await _operator_view(s, registry) for s in states]

    found = with_redis(work)
    if json_out:
        print_json(found)
        return
    states = cast(list[SagaState], found)
    if not states:
        console().print(f"no {status} sagas" if status else "no sagas")
        return
    table = Table("saga", "type", "status", "reason", "customer", "steps", "created")
    for s in states:
        steps = " ".join(f"{st.name}:{st.status}" for st in s.steps)
        table.add_row(
            s.saga_id,
            s.saga_type,
            s.status,
            s.reason or "",
            s.customer,
            steps,
            utc_text(s.created_at, seconds=True),
        )
    console().print(table)


def show_saga(
    saga_id: Annotated[str, typer.Argument(metavar="SAGA_ID", help="The saga's id.")],
    json_out: Json = False,
) -> None:
    """Show a saga's state and its event history with timings."""

    async def work(
        redis: Redis, settings: Settings
    ) -> tuple[SagaState | None, list[EventRecord], dict[str, Any]]:
        store = RedisSagaStore(redis, settings.namespace)
        state = await store.load(saga_id)
        if state is None:
            return None, [], {}
        view = await _operator_view(state, registry_for(redis, settings))
        return state, await store.events(saga_id), view

    state, records, view = with_redis(work)
    if state is None:
        raise CliError(f"no saga {saga_id!r}")
    if json_out:
        view["timeline"] = [
            {
                **row,
                "start": utc_text(row["start"]) if row["start"] else None,
                "end": utc_text(row["end"]) if row["end"] else None,
            }
            for row in timeline_rows(state)
        ]
        view["events"] = [r.to_wire() for r in records]
        print_json(view)
        return
    out = console()
    out.print(
        f"saga {state.saga_id} ({state.saga_type} v{state.definition_version}) — {state.status}"
        + (f", reason: {state.reason}" if state.reason else "")
    )
    out.print(
        f"customer {state.customer}, started {state.created_at.isoformat(timespec='seconds')}, "
        f"last change {state.updated_at.isoformat(timespec='seconds')}, version {state.version}"
    )
    if view["summary"]:
        out.print(", ".join(f"{k} {'—' if v is None else v}" for k, v in view["summary"].items()))
    start = records[0].at if records else state.created_at
    timeline = Table(
        "step",
        "action",
        "start (+ms)",
        "end (+ms)",
        "took (ms)",
        "attempts",
        "outcome",
        title="timeline",
    )
    for row in timeline_rows(state):
        timeline.add_row(
            row["step"],
            row["action"],
            _ms(start, row["start"]),
            _ms(start, row["end"]),
            _ms(row["start"], row["end"]),
            str(row["attempts"]),
            row["outcome"],
        )
    out.print(timeline)
    history = Table("seq", "+ms", "event", "details", title="events")
    for record in records:
        data = record.to_wire()["data"]
        details = " ".join(
            f"{k}={v}" for k, v in data.items() if k not in ("input", "steps", "result")
        )
        history.add_row(str(record.seq), _ms(start, record.at), record.event.type, details)
    out.print(history)


def timeline_rows(state: SagaState) -> list[dict[str, Any]]:
    """Each step that ran, and each compensation, with its start, end, attempts and outcome."""
    rows: list[dict[str, Any]] = []
    for step in state.steps:
        if step.status in ("pending", "skipped"):
            rows.append(
                {
                    "step": step.name,
                    "action": "execute",
                    "start": None,
                    "end": None,
                    "attempts": 0,
                    "outcome": "skipped" if step.status == "skipped" else "not run",
                }
            )
            continue
        executed = {
            "running": "running",
            "failed": f"failed: {step.reason}",
        }.get(step.status, "succeeded")
        if (
            step.status in ("compensating", "compensated", "compensation_failed")
            and step.effect_unknown
        ):
            executed = "failed (effect unknown)"
        rows.append(
            {
                "step": step.name,
                "action": "execute",
                "start": step.started_at,
                "end": step.ended_at,
                "attempts": step.attempts,
                "outcome": executed,
            }
        )
        if step.compensation_attempts:
            compensated = {
                "compensating": "running",
                "compensated": "compensated",
                "compensation_failed": f"failed: {step.reason}",
            }.get(step.status, "?")
            rows.append(
                {
                    "step": step.name,
                    "action": "compensate",
                    "start": step.compensation_started_at,
                    "end": step.compensation_ended_at,
                    "attempts": step.compensation_attempts,
                    "outcome": compensated,
                }
            )
    return rows


async def _operator_view(state: SagaState, registry: DefinitionRegistry) -> dict[str, Any]:
    """The customer's view of a saga, plus who the customer is."""
    definition = await registry.get(state.saga_type, state.definition_version)
    view = saga_view(state, definition).model_dump(mode="json")
    return {**view, "customer": state.customer}


def _ms(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    return f"{(end - start).total_seconds() * 1000:.0f}"
