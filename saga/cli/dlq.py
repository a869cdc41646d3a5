"""The `saga dlq` commands: list, replay and purge the namespace's dead letters."""

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from contracts.topology import Topology
from saga.cli.output import CliError, Json, console, print_json, settings
from saga.deadletters import DeadLetterQueue, ParkedMessage

dlq_app = typer.Typer(
    help="Dead letters: messages that could not be processed.", no_args_is_help=True
)


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
