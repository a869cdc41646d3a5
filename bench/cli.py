"""`saga bench`: measure order sagas through the real path on the real servers."""

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from saga import eventloop
from saga.cli.output import CliError, Json, console, print_json, settings
from saga.logs import configure_logging

if TYPE_CHECKING:  # loaded only for `saga bench`
    from bench.run import BenchResult, Mode


def bench(
    ctx: typer.Context,
    sagas: Annotated[int, typer.Option(min=1, max=1_000_000, help="How many sagas.")] = 2000,
    concurrency: Annotated[int, typer.Option(min=1, max=10_000, help="Sagas in flight.")] = 200,
    processes: Annotated[
        bool,
        typer.Option("--processes", help="Run the orchestrator and services as child processes."),
    ] = False,
    orchestrators: Annotated[
        int, typer.Option(min=1, max=8, help="Orchestrator processes (with --processes).")
    ] = 1,
    baseline: Annotated[
        bool,
        typer.Option(
            "--baseline",
            help="Then run a minimal hand-written flow with the same numbers, and compare.",
        ),
    ] = False,
    core: Annotated[
        bool,
        typer.Option(
            "--core",
            help="Time only the core's work a saga (the start with the input's check, the "
            "decisions, the append arguments, the envelopes), with no I/O and no server; "
            "takes only --sagas and --json.",
        ),
    ] = False,
    json_out: Json = False,
) -> None:
    """Run order sagas on the configured servers and print throughput and latency (with
    --core: time the core's work alone, with no server)."""
    if core:
        given = [
            f"--{name}"
            for name in ("concurrency", "processes", "orchestrators", "baseline")
            if _given(ctx, name)
        ]
        if given:
            raise CliError(
                f"--core takes only --sagas and --json, not {', '.join(given)}", usage=True
            )
        _core(sagas, json_out=json_out)
        return
    if orchestrators > 1 and not processes:
        raise CliError("--orchestrators above 1 needs --processes", usage=True)
    config = settings().model_copy(update={"log_level": "warning"})
    configure_logging(config)
    from bench.run import run_bench

    mode: Mode = "processes" if processes else "in-process"
    try:
        result = eventloop.run(
            run_bench(
                config,
                sagas=sagas,
                concurrency=concurrency,
                mode=mode,
                orchestrators=orchestrators,
                baseline=baseline,
            ),
            config.event_loop,
        )
    except (RuntimeError, TimeoutError) as exc:
        raise CliError(f"bench stopped: {exc}") from None
    if json_out:
        print_json(result.as_dict())
    else:
        _print(result)
    if result.failed or (result.baseline is not None and result.baseline.failed):
        raise typer.Exit(1)


def _print(result: "BenchResult") -> None:
    title = f"saga bench ({result.mode}, {result.orchestrators} orchestrator(s))"
    table = Table("figure", "saga", *(["baseline"] if result.baseline else []), title=title)
    floor: dict[str, Any] = vars(result.baseline) if result.baseline else {}
    for key, value in result.as_dict().items():
        if key in ("baseline", "memory"):
            continue
        if key == "cpu_seconds":
            value = ", ".join(f"{k} {v:.1f}" for k, v in value.items())
        elif key == "cpu_ms_per_saga":
            value = ", ".join(f"{k} {v:.2f}" for k, v in value.items())
        elif key == "redis_commands_by_name":
            value = ", ".join(f"{k} {v:g}" for k, v in value.items())
        row = [key, "" if value is None else str(value)]
        if result.baseline:
            row.append(str(floor.get(key, "")))
        table.add_row(*row)
    console().print(table)
    memory = Table(
        "sagas done", "Redis MB", "keys", "saga keys", "RSS MB", title="memory (Redis: all of it)"
    )
    for sample in result.memory:
        rss = ", ".join(f"{k} {v:.0f}" for k, v in sample.rss_mb.items())
        memory.add_row(
            str(sample.sagas_done),
            str(sample.redis_mb),
            str(sample.redis_keys),
            str(sample.saga_keys),
            rss,
        )
    console().print(memory)


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the option was given (on the command line or in the environment)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def _core(sagas: int, *, json_out: bool) -> None:
    from bench.core import SagaDidNotComplete, run_core
    from bench.run import bench_order
    from saga.definitions import compile_documents
    from services.messages import CATALOGUE
    from services.shop import DEFINITIONS

    definition = compile_documents(DEFINITIONS, CATALOGUE)["order"][0]
    try:
        result = run_core(definition, bench_order().model_dump(mode="json"), sagas=sagas)
    except SagaDidNotComplete as exc:
        raise CliError(f"bench stopped: {exc}") from None
    figures = result.as_dict()
    if not json_out:  # the parts on one line of the table
        figures["parts_us"] = ", ".join(f"{k} {v:g}" for k, v in result.parts_us.items())
    _print_figures(figures, title="saga bench --core (the core's work, no I/O)", json_out=json_out)


def flood(
    attempts: Annotated[
        int, typer.Option(min=1, max=10_000, help="Wrong-password sign-ins to send.")
    ] = 500,
    concurrency: Annotated[
        int, typer.Option(min=1, max=1000, help="Of them in flight at once.")
    ] = 50,
    accounts: Annotated[
        int, typer.Option(min=1, max=10_000, help="Accounts they go round (1: one victim).")
    ] = 1,
    json_out: Json = False,
) -> None:
    """Flood the auth service of a system started here with wrong passwords from one
    client; print what kept working."""
    config = settings().model_copy(update={"log_level": "warning"})
    configure_logging(config)
    from bench.flood import run_flood

    try:
        result = eventloop.run(
            run_flood(config, attempts=attempts, concurrency=concurrency, accounts=accounts),
            config.event_loop,
        )
    except (RuntimeError, TimeoutError) as exc:
        raise CliError(f"bench-flood stopped: {exc}") from None
    _print_figures(
        result.as_dict(),
        title="saga bench-flood (wrong passwords from one client)",
        json_out=json_out,
    )


def _print_figures(figures: dict[str, Any], *, title: str, json_out: bool) -> None:
    """A run's figures as one JSON document, or as a table of figure and value."""
    if json_out:
        print_json(figures)
        return
    table = Table("figure", "value", title=title)
    for key, value in figures.items():
        table.add_row(key, str(value))
    console().print(table)
