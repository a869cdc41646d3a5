"""Operator commands that change things: replay failed sagas."""

import asyncio
from typing import Annotated, Any

import typer

from saga import operations
from saga.bootstrap import Wiring
from saga.cli.output import (
    CliError,
    Json,
    connect_or_warn,
    console,
    print_json,
    settings,
    traced,
)
from saga.cli.presence import refuse_if_lifeless
from saga.core.definition import SagaDefinition
from saga.core.state import SagaState
from saga.logs import configure_logging
from saga.settings import Settings

MAX_REPLAY = 100_000


def _only_failed(status: str) -> str:
    if status != "failed":
        raise typer.BadParameter(f"only failed sagas can be replayed, not {status!r} ones")
    return status


def replay(
    saga_id: Annotated[
        str | None, typer.Argument(metavar="SAGA_ID", help="The failed saga to resume.")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(parser=_only_failed, help="Replay every saga in this status (only: failed)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be sent; change nothing.")
    ] = False,
    json_out: Json = False,
) -> None:
    """Resume failed sagas once the cause is fixed: undo what is left to undo, or, past a
    step that cannot be undone, finish them."""
    if (saga_id is None) == (status is None):
        raise CliError("name one saga, or give --status failed", usage=True)
    config = settings()
    # The orchestrator's own log lines (a command left to the relay) go to stderr.
    configure_logging(config.model_copy(update={"log_level": "warning"}))
    traced("saga-cli")  # a replay is a span of each saga's trace, when traced
    results = asyncio.run(_replay(config, saga_id, dry_run=dry_run))
    if json_out:
        print_json(results)
    else:
        print_replay(results, dry_run=dry_run)


def print_replay(results: list[dict[str, Any]], *, dry_run: bool) -> None:
    """`saga replay` for people: one line per saga."""
    out = console()
    if not results:
        out.print("no failed sagas")
    for r in results:
        out.print(replay_line(r, dry_run=dry_run), soft_wrap=True)


def replay_line(result: dict[str, Any], *, dry_run: bool) -> str:
    """One line on what replaying one saga did (or would do)."""
    commands = result["commands"]
    sends = ", ".join(
        f"{c['type']} to {c['participant']} (key {c['idempotency_key']})" for c in commands
    )
    how = {
        "undo": "undo what is left",
        "finish": "finish it: a step that cannot be undone took effect or may have",
    }[result["direction"]]
    if result["outcome"] != "replayed":
        return (
            f"saga {result['saga_id']}: not replayed: it was replayed by someone else "
            f"meanwhile, or is no longer failed (now {result['status']})"
        )
    if dry_run:
        return f"saga {result['saga_id']}: would {how}; would send {sends or 'nothing'}"
    if not commands:
        return (
            f"saga {result['saga_id']}: replayed to {how}; nothing could be sent (see its "
            f"reason); now {result['status']}"
        )
    if not result["published"]:
        return (
            f"saga {result['saga_id']}: replayed to {how}, now {result['status']}; "
            f"{sends} stored in its outbox but not sent (RabbitMQ did not take it): the "
            "orchestrator's outbox relay sends it once the broker is back"
        )
    return (
        f"saga {result['saga_id']}: replayed to {how}; sent {sends or 'nothing'}; "
        f"now {result['status']}"
    )


def _known(found: dict[tuple[str, int], SagaDefinition | None], state: SagaState) -> SagaDefinition:
    definition = found[(state.saga_type, state.definition_version)]
    assert definition is not None, "unknown definitions were refused above"
    return definition


async def _replay(config: Settings, saga_id: str | None, *, dry_run: bool) -> list[dict[str, Any]]:
    wiring = Wiring(config)
    transport = wiring.transport("cli")
    try:
        store = wiring.store
        await store.check_layout()  # on a Redis Cluster: the sagas are where it looks
        if saga_id is not None:
            state = await store.load(saga_id)
            if state is None:
                raise CliError(f"no saga {saga_id!r}")
            if state.status != "failed":
                raise CliError(f"saga {saga_id} is {state.status}, not failed: nothing to replay")
            targets = [state]
        else:
            targets = await store.find(status="failed", limit=MAX_REPLAY)
            if not targets:
                await refuse_if_lifeless(wiring.redis, config, empty="no failed sagas")
                return []
        registry = wiring.registry
        sagas = {(s.saga_type, s.definition_version) for s in targets}
        found = {key: await registry.get(*key) for key in sagas}
        unknown = sorted(f"{t} v{v}" for (t, v), d in found.items() if d is None)
        if unknown:
            raise CliError(f"no saga definition {', '.join(unknown)}")
        if dry_run:
            return [
                operations.replay_preview(_known(found, state), state, by="operator")
                for state in targets
            ]
        await connect_or_warn(transport, "the orchestrator's relay will send the commands")
        dispatcher = wiring.dispatcher(transport)
        orchestrator = wiring.orchestrator(dispatcher)
        results = [
            await operations.replay(orchestrator, _known(found, state), state, by="operator")
            for state in targets
        ]
        await dispatcher.settle()
        return results
    finally:
        await transport.close()
        await wiring.aclose()
