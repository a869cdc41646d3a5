"""The `saga dlq` commands: list, replay, drop and purge the namespace's dead letters."""

import asyncio
import sys
from collections.abc import Coroutine
from typing import Annotated, Any, Final, TypeVar

import typer
from rich.table import Table

from contracts.topology import Topology
from saga.cli.output import CliError, Json, console, print_json, settings
from saga.clock import utc_text
from saga.deadletters import (
    DeadLetterQueue,
    DeadLetterQueueMissing,
    ParkedMessage,
    Replay,
    ReplayInterrupted,
    ReplayRunning,
)
from saga.safetext import printable

T = TypeVar("T")
# Of a preview, a table shows this much (`--json` gives all of it).
TABLE_PREVIEW: Final = 60

dlq_app = typer.Typer(
    help="Dead letters: messages that could not be processed.", no_args_is_help=True
)


def _dead_letters() -> DeadLetterQueue:
    config = settings()
    return DeadLetterQueue(config.rabbitmq_url, Topology(config.namespace))


def _run(work: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(work)
    except (DeadLetterQueueMissing, ReplayRunning) as exc:
        raise CliError(str(exc)) from exc
    except ReplayInterrupted as exc:
        raise CliError(
            f"the connection to RabbitMQ was lost ({exc}) after {len(exc.sent)} message(s) "
            "were sent back; the others are parked still: run it again"
        ) from exc


def _table(letters: list[ParkedMessage]) -> Table:
    table = Table("id", "parked at", "from", "type", "saga", "reason", "body")
    for letter in letters:
        at = utc_text(letter.at, seconds=True) if letter.at else "?"
        body = printable(letter.preview, limit=TABLE_PREVIEW) if letter.size else "(empty)"
        table.add_row(
            letter.id,
            at,
            letter.queue or "?",
            letter.type or "?",
            letter.saga_id or "?",
            letter.reason,
            body,
        )
    return table


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 100,
    json_out: Json = False,
) -> None:
    """List parked messages and why; they stay parked.

    Each with its id, when it was parked, the queue it came from, and the start of its
    body as safe text (--json: at most 1 KB of it)."""
    letters = _run(_dead_letters().peek(limit=limit))
    if json_out:
        print_json(letters)
    elif not letters:
        console().print("no dead letters")
    else:
        console().print(_table(letters))


@dlq_app.command("replay")
def dlq_replay(
    letter_id: Annotated[
        str | None, typer.Argument(metavar="ID", help="The parked message to send back.")
    ] = None,
    all_letters: Annotated[
        bool, typer.Option("--all", help="Send back every message parked when it starts, once.")
    ] = False,
    json_out: Json = False,
) -> None:
    """Send parked messages back to the queue they came from (after fixing the cause)."""
    if (letter_id is None) == (not all_letters):
        raise CliError("name one dead letter, or give --all", usage=True)
    done: Replay = _run(
        _dead_letters().replay(lambda letter: all_letters or letter.id == letter_id)
    )
    for letter, problem in done.refused:
        print(f"saga: dead letter {letter.id} stays parked: {problem}", file=sys.stderr)
    if letter_id is not None and not done.sent and not done.refused:
        raise CliError(f"no dead letter {letter_id!r}")
    if json_out:
        print_json({"replayed": len(done.sent)})
    else:
        console().print(f"{len(done.sent)} message(s) sent back")
    if done.refused:
        raise typer.Exit(1)


@dlq_app.command("drop")
def dlq_drop(
    letter_ids: Annotated[
        list[str], typer.Argument(metavar="ID", help="The parked messages to drop.")
    ],
    json_out: Json = False,
) -> None:
    """Drop the named parked messages for good; the others stay parked, in their order.

    An id not parked (dropped already, or never there) is named, and the exit is 1."""
    wanted = list(dict.fromkeys(letter_ids))
    dropped = {letter.id for letter in _run(_dead_letters().remove(wanted))}
    missing = [i for i in wanted if i not in dropped]
    if json_out:
        print_json({"dropped": [i for i in wanted if i in dropped], "missing": missing})
    else:
        console().print(f"{len(dropped)} message(s) dropped")
    for letter_id in missing:
        print(f"saga: no dead letter {letter_id!r}", file=sys.stderr)
    if missing:
        raise typer.Exit(1)


@dlq_app.command("purge")
def dlq_purge(
    yes: Annotated[bool, typer.Option("--yes", help="Really drop them all.")] = False,
    json_out: Json = False,
) -> None:
    """Drop every parked message."""
    if not yes:
        raise CliError("purging drops the messages for good: add --yes", usage=True)
    count = _run(_dead_letters().purge())
    if json_out:
        print_json({"purged": count})
    else:
        console().print(f"{count} message(s) purged")
