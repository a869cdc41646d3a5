"""The operator's view of sagas: list them, show one with its history and timings."""

import json
from datetime import datetime
from typing import Annotated, Any, cast, get_args

import typer
from rich.console import Console
from rich.table import Table

from saga.bootstrap import Wiring
from saga.cli.output import CliError, Json, console, print_json, with_wiring
from saga.cli.presence import refuse_if_lifeless
from saga.cli.values import one_of
from saga.clock import utc_text
from saga.core.events import EventRecord
from saga.core.state import SagaState, SagaStatus
from saga.registry import DefinitionRegistry
from saga.timeline import timeline
from saga.views import saga_view

_STATUSES = get_args(SagaStatus)


def list_sagas(
    status: Annotated[
        str | None,
        typer.Option(
            parser=one_of(_STATUSES), help=f"Only sagas in this status: {', '.join(_STATUSES)}."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 50,
    json_out: Json = False,
) -> None:
    """List sagas, newest first."""

    async def work(wiring: Wiring) -> list[dict[str, Any]] | list[SagaState]:
        states = await wiring.store.find(status=status, limit=limit)
        if not states:
            await refuse_if_lifeless(wiring.redis, wiring.settings, empty=_no_sagas(status))
        if not json_out:
            return states
        return [await _operator_view(s, wiring.registry) for s in states]

    found = with_wiring(work)
    if json_out:
        print_json(found)
        return
    states = cast(list[SagaState], found)
    if not states:
        console().print(_no_sagas(status))
        return
    console().print(sagas_table(states))


def sagas_table(states: list[SagaState]) -> Table:
    """`saga list` for people: one row per saga."""
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
    return table


def _no_sagas(status: str | None) -> str:
    return f"no {status} sagas" if status else "no sagas"


def show_saga(
    saga_id: Annotated[str, typer.Argument(metavar="SAGA_ID", help="The saga's id.")],
    json_out: Json = False,
) -> None:
    """Show a saga's state and its event history with timings."""

    async def work(
        wiring: Wiring,
    ) -> tuple[SagaState | None, list[EventRecord], dict[str, Any]]:
        state = await wiring.store.load(saga_id)
        if state is None:
            return None, [], {}
        view = await _operator_view(state, wiring.registry)
        return state, await wiring.store.events(saga_id), view

    state, records, view = with_wiring(work)
    if state is None:
        raise CliError(f"no saga {saga_id!r}")
    if json_out:
        print_json(saga_json(state, records, view))
        return
    print_saga(console(), state, records, view)


def saga_json(state: SagaState, records: list[EventRecord], view: dict[str, Any]) -> dict[str, Any]:
    """`saga show --json`: the operator's view, the timeline and the event history."""
    return {
        **view,
        "timeline": [
            {
                "step": row.step,
                "action": row.action,
                "replay": row.replay,
                "start": utc_text(row.start) if row.start else None,
                "end": utc_text(row.end) if row.end else None,
                "attempts": row.attempts,
                "outcome": row.outcome,
            }
            for row in timeline(records)
        ],
        "events": [r.to_wire() for r in records],
    }


def print_saga(
    out: Console, state: SagaState, records: list[EventRecord], view: dict[str, Any]
) -> None:
    """`saga show` for people: the state, the timeline and the event history as tables."""
    out.print(
        f"saga {state.saga_id} ({state.saga_type} v{state.definition_version}) — {state.status}"
        + (f", reason: {state.reason}" if state.reason else "")
    )
    out.print(
        f"customer {state.customer}, started {utc_text(state.created_at, seconds=True)}, "
        f"last change {utc_text(state.updated_at, seconds=True)}, version {state.version}"
    )
    if view["summary"]:
        out.print(", ".join(_summary_entries(view["summary"], view["undone"])))
    start = records[0].at if records else state.created_at
    rows = Table(
        "step",
        "action",
        "start (+ms)",
        "end (+ms)",
        "took (ms)",
        "attempts",
        "outcome",
        title="timeline",
    )
    for row in timeline(records):
        rows.add_row(
            row.step,
            row.action_shown,
            _ms(start, row.start),
            _ms(start, row.end),
            _ms(row.start, row.end),
            str(row.attempts),
            row.outcome,
        )
    out.print(rows)
    history = Table("seq", "+ms", "event", "details", title="events")
    for record in records:
        data = record.to_wire()["data"]
        details = " ".join(
            f"{k}={_shown(v)}"
            for k, v in data.items()
            if k not in ("input", "steps", "result") and v is not None
        )
        history.add_row(str(record.seq), _ms(start, record.at), record.event.type, details)
    out.print(history)


def _summary_entries(summary: dict[str, Any], undone: dict[str, Any]) -> list[str]:
    """`name value` for each entry; a value a compensation undid is marked so."""
    return [
        f"{k} {_shown(undone[k])} (undone)" if k in undone else f"{k} {_shown(v)}"
        for k, v in summary.items()
    ]


def _shown(value: Any) -> str:
    """A value for people: a dash for none, text as it is, anything else as JSON."""
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value)


async def _operator_view(state: SagaState, registry: DefinitionRegistry) -> dict[str, Any]:
    """The customer's view of a saga, plus who the customer is."""
    definition = await registry.get(state.saga_type, state.definition_version)
    view = saga_view(state, definition).model_dump(mode="json")
    return {**view, "customer": state.customer}


def _ms(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "—"
    return f"{(end - start).total_seconds() * 1000:.0f}"
