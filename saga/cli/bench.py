"""`saga bench`: measure order sagas through the real path on the real servers."""

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from saga.bench import Mode, run_bench
from saga.cli.output import CliError, Json, console, print_json, settings
from saga.logs import configure_logging


def bench(
    sagas: Annotated[int, typer.Option(min=1, max=1_000_000, help="How many sagas.")] = 2000,
    concurrency: Annotated[int, typer.Option(min=1, max=10_000, help="Sagas in flight.")] = 200,
    processes: Annotated[
        bool,
        typer.Option("--processes", help="Run the orchestrator and services as child processes."),
    ] = False,
    json_out: Json = False,
) -> None:
    """Run order sagas on the configured servers and print throughput and latency."""
    config = settings().model_copy(update={"log_level": "warning"})
    configure_logging(config)
    mode: Mode = "processes" if processes else "in-process"
    try:
        result = asyncio.run(run_bench(config, sagas=sagas, concurrency=concurrency, mode=mode))
    except (RuntimeError, TimeoutError) as exc:
        raise CliError(f"bench stopped: {exc}") from None
    if json_out:
        print_json(result.as_dict())
    else:
        table = Table("figure", "value", title=f"saga bench ({mode})")
        for key, value in result.as_dict().items():
            if key == "cpu_seconds":
                value = ", ".join(f"{k} {v:.1f}" for k, v in value.items())
            table.add_row(key, str(value))
        console().print(table)
    if result.failed:
        raise typer.Exit(1)
