"""`saga demo`: run the embedded system, show the sagas as they end, then a table."""

import asyncio
import socket
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from saga.cli.output import CliError, Json, console, print_json, settings
from saga.logs import configure_logging

if TYPE_CHECKING:  # the embedded system (FastAPI, fakeredis) loads only for `saga demo`
    from saga.demo import DemoResult
    from saga.settings import Settings


def demo(
    orders: Annotated[
        int, typer.Option(min=1, max=10_000, help="How many requests (orders) to make.")
    ] = 20,
    json_out: Json = False,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve", help="Keep the system running with the web console on a local port."
        ),
    ] = False,
    port: Annotated[int, typer.Option(help="The console's port, with --serve.")] = 8080,
) -> None:
    """Run the whole system in this process, with no servers: a first look."""
    from saga.demo import NothingToDemo, run_demo

    # The demo runs no servers: their URLs are not its business.
    config = settings(servers=False).model_copy(update={"log_level": "warning"})
    configure_logging(config)
    out = console()
    if serve:
        _serve(config, port=port, orders=orders)
        return
    with Progress(
        TextColumn("sagas ending"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=True,
        disable=json_out or not out.is_terminal,
    ) as bar:
        task = bar.add_task("sagas", total=orders)
        try:
            result = asyncio.run(
                run_demo(
                    config,
                    orders=orders,
                    progress=lambda done, _: bar.update(task, completed=done),
                )
            )
        except NothingToDemo as exc:
            raise CliError(str(exc)) from None
    if json_out:
        print_json(
            {
                "seconds": round(result.seconds, 3),
                "sagas": [
                    {
                        "saga_id": s.state.saga_id,
                        "scenario": s.request.name,
                        "customer": s.state.customer,
                        "status": s.state.status,
                        "reason": s.state.reason,
                        "expected": s.request.expect,
                        "steps": {st.name: st.status for st in s.state.steps},
                    }
                    for s in result.sagas
                ],
            }
        )
    else:
        out.print(_table(result))
        out.print("steps: ✓ succeeded  - skipped  ✗ failed  ↺ compensated  · not needed")
        out.print(_summary(result))
    if not result.all_as_expected:
        raise typer.Exit(1)


def _table(result: "DemoResult") -> Table:
    table = Table("saga", "scenario", "customer", "status", "reason", "steps", title="saga demo")
    marks = {
        "succeeded": "✓",
        "skipped": "-",
        "failed": "✗",
        "compensated": "↺",
        "pending": "·",
        "compensation_failed": "!",
    }
    for s in result.sagas:
        steps = " ".join(f"{marks.get(st.status, '?')}{st.name}" for st in s.state.steps)
        table.add_row(
            s.state.saga_id[:8],
            s.request.name,
            s.state.customer,
            s.state.status,
            s.state.reason or "",
            steps,
        )
    return table


def _summary(result: "DemoResult") -> str:
    statuses = [s.state.status for s in result.sagas]
    counts = ", ".join(
        f"{statuses.count(k)} {k}"
        for k in ("completed", "compensated", "failed", "running", "compensating")
        if statuses.count(k)
    )
    verdict = "every saga ended as expected" if result.all_as_expected else "NOT as expected"
    sagas = "saga" if len(statuses) == 1 else "sagas"
    return f"{len(statuses)} {sagas} in {result.seconds:.2f}s: {counts}; {verdict}"


def _serve(config: "Settings", *, port: int, orders: int) -> None:
    from saga import eventloop
    from saga.demo import ADMIN, PASSWORD, serve_demo

    with socket.socket() as probe:  # said in one line here, not in uvicorn's words
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise CliError(f"cannot serve the console on port {port}: {exc.strerror}") from None

    def serving(url: str) -> None:
        console().print(
            f"the console: {url}\nsign in as {ADMIN}, password {PASSWORD}\n(Ctrl-C stops it)",
            soft_wrap=True,
        )

    try:
        # On the configured loop, with the collector set, as every serving process.
        eventloop.run(
            serve_demo(config, port=port, orders=orders, serving=serving), config.event_loop
        )
    except KeyboardInterrupt:  # Ctrl-C: the way it is meant to stop
        console().print("stopped")
