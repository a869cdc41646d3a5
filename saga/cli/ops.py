"""Operator commands that change things: replay failed sagas, handle dead letters."""

import asyncio
from typing import Annotated, Any

import typer
from rich.table import Table

from contracts.topology import Topology
from saga.bootstrap import registry_for, transport_for
from saga.cli.output import CliError, Json, connect_or_warn, console, print_json, settings
from saga.clock import new_id
from saga.connections import redis_client
from saga.core.decide import OutgoingCommand, ReplaySaga, decide
from saga.core.definition import SagaDefinition
from saga.core.state import SagaState
from saga.deadletters import DeadLetterQueue, ParkedMessage
from saga.logs import configure_logging
from saga.orchestrator import Orchestrator
from saga.outbox import Dispatcher
from saga.settings import Settings
from saga.store import RedisSagaStore

dlq_app = typer.Typer(
    help="Dead letters: messages that could not be processed.", no_args_is_help=True
)
MAX_REPLAY = 100_000


def replay(
    saga_id: Annotated[
        str | None, typer.Argument(metavar="SAGA_ID", help="The failed saga to resume.")
    ] = None,
    status: Annotated[
        str | None, typer.Option(help="Replay every saga in this status (only: failed).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be sent; change nothing.")
    ] = False,
    json_out: Json = False,
) -> None:
    """Resume failed sagas once the cause is fixed: their failed compensations run again."""
    if (saga_id is None) == (status is None):
        raise CliError("name one saga, or give --status failed", usage=True)
    if status is not None and status != "failed":
        raise CliError(f"only failed sagas can be replayed, not {status!r} ones", usage=True)
    config = settings()
    # The orchestrator's own log lines (a command left to the relay) go to stderr.
    configure_logging(config.model_copy(update={"log_level": "warning"}))
    results = asyncio.run(_replay(config, saga_id, dry_run=dry_run))
    if json_out:
        print_json(results)
        return
    out = console()
    if not results:
        out.print("no failed sagas")
    for r in results:
        sends = ", ".join(f"{c['type']} to {c['participant']}" for c in r["commands"])
        if dry_run:
            out.print(f"saga {r['saga_id']}: would send {sends or 'nothing'}")
        else:
            out.print(f"saga {r['saga_id']}: sent {sends or 'nothing'}; now {r['status']}")


def _known(found: dict[tuple[str, int], SagaDefinition | None], state: SagaState) -> SagaDefinition:
    definition = found[(state.saga_type, state.definition_version)]
    assert definition is not None, "unknown definitions were refused above"
    return definition


async def _replay(config: Settings, saga_id: str | None, *, dry_run: bool) -> list[dict[str, Any]]:
    redis = redis_client(config)
    transport = transport_for(config, "cli")
    try:
        store = RedisSagaStore(redis, config.namespace)
        if saga_id is not None:
            state = await store.load(saga_id)
            if state is None:
                raise CliError(f"no saga {saga_id!r}")
            if state.status != "failed":
                raise CliError(f"saga {saga_id} is {state.status}, not failed: nothing to replay")
            targets = [state]
        else:
            targets = await store.find(status="failed", limit=MAX_REPLAY)
        registry = registry_for(redis, config)
        sagas = {(s.saga_type, s.definition_version) for s in targets}
        found = {key: await registry.get(*key) for key in sagas}
        unknown = sorted(f"{t} v{v}" for (t, v), d in found.items() if d is None)
        if unknown:
            raise CliError(f"no saga definition {', '.join(unknown)}")
        if dry_run:
            return [
                _result(state, _replay_decision(_known(found, state), state)) for state in targets
            ]
        await connect_or_warn(transport, "the orchestrator's relay will send the commands")
        dispatcher = Dispatcher(store, transport)
        orchestrator = Orchestrator(store, dispatcher, registry)
        results = []
        for state in targets:
            applied = await orchestrator.apply(
                state.saga_id,
                ReplaySaga(by="operator"),
                applied_id=f"replay:{state.saga_id}:{state.version}",
            )
            results.append(_result(applied.state or state, applied.commands))
        await dispatcher.settle()
        return results
    finally:
        await transport.close()
        await redis.aclose()


def _replay_decision(definition: Any, state: SagaState) -> tuple[OutgoingCommand, ...]:
    decision = decide(
        definition,
        state,
        ReplaySaga(by="operator"),
        now=state.updated_at,
        new_id=new_id,  # ids of commands that will not be sent
        rng=lambda: 0.0,
    )
    return decision.commands


def _result(state: SagaState, commands: tuple[OutgoingCommand, ...]) -> dict[str, Any]:
    return {
        "saga_id": state.saga_id,
        "status": state.status,
        "commands": [
            {
                "type": c.envelope.type,
                "participant": c.participant,
                "idempotency_key": c.envelope.idempotency_key,
                "payload": c.envelope.payload,
            }
            for c in commands
        ],
    }


# --- dead letters --------------------------------------------------------------------


def _dead_letters() -> DeadLetterQueue:
    config = settings()
    return DeadLetterQueue(config.rabbitmq_url, Topology(config.namespace))


def _table(letters: list[ParkedMessage]) -> Table:
    table = Table("id", "from", "type", "saga", "reason")
    for letter in letters:
        table.add_row(
            letter.id,
            letter.source_queue or "?",
            letter.type or "?",
            letter.saga_id or "?",
            letter.reason,
        )
    return table


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 100,
    json_out: Json = False,
) -> None:
    """List parked messages with where they came from and why; they stay parked."""
    letters = asyncio.run(_dead_letters().peek(limit=limit))
    if json_out:
        print_json(letters)
    else:
        console().print(_table(letters))


@dlq_app.command("replay")
def dlq_replay(
    letter_id: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="The parked message to send back.")
    ] = None,
    all_letters: Annotated[bool, typer.Option("--all", help="Send every one back.")] = False,
    json_out: Json = False,
) -> None:
    """Send parked messages back to the queue they came from (after fixing the cause)."""
    if (letter_id is None) == (not all_letters):
        raise CliError("name one dead letter, or give --all", usage=True)
    replayed = asyncio.run(
        _dead_letters().replay(lambda letter: all_letters or letter.id == letter_id)
    )
    if letter_id is not None and not replayed:
        raise CliError(f"no dead letter {letter_id!r} (or it has no queue to go back to)")
    if json_out:
        print_json(replayed)
    else:
        console().print(f"{len(replayed)} message(s) sent back")


@dlq_app.command("purge")
def dlq_purge(
    yes: Annotated[bool, typer.Option("--yes", help="Really drop them all.")] = False,
    json_out: Json = False,
) -> None:
    """Drop every parked message."""
    if not yes:
        raise CliError("purging drops the messages for good: add --yes", usage=True)
    count = asyncio.run(_dead_letters().purge())
    if json_out:
        print_json({"purged": count})
    else:
        console().print(f"{count} message(s) purged")
