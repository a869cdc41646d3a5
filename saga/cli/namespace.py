"""`saga namespace drop`: remove a namespace with everything in it."""

import asyncio
from typing import Annotated

import typer

from contracts.topology import NAMESPACE_PATTERN
from saga.bootstrap import Wiring
from saga.cli.output import CliError, Json, console, print_json, settings
from saga.namespaces import NamespaceInUse, delete_namespace

namespace_app = typer.Typer(
    help="Namespaces: remove one with everything in it.", no_args_is_help=True
)


@namespace_app.command("drop")
def drop(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The namespace to remove.")],
    yes: Annotated[bool, typer.Option("--yes", help="Really delete it all.")] = False,
    json_out: Json = False,
) -> None:
    """Delete namespace NAME for good: every Redis key under it (sagas, definitions,
    users, the participants' data and records) and its queues and exchanges, with their
    messages and dead letters. Refused while anything consumes its queues.

    NAME is said in full, whatever SAGA_NAMESPACE is; dropping one already gone drops
    nothing and says so."""
    if not NAMESPACE_PATTERN.fullmatch(name):
        raise CliError(
            f"Invalid value for 'NAME': {name[:60]!r} is not a namespace (1 to 48 of a-z, "
            "0-9, '_' and '-', starting with a letter or digit)",
            usage=True,
        )
    if not yes:
        raise CliError(
            f"dropping deletes namespace {name!r} and everything in it for good: add --yes",
            usage=True,
        )
    config = settings().model_copy(update={"namespace": name})

    async def run() -> int:
        wiring = Wiring(config)  # the namespace's, for its built-in participants too
        try:
            return await delete_namespace(
                wiring.redis,
                config.rabbitmq_url,
                name,
                participants=await wiring.registry.participants(),
                unless_in_use=True,
            )
        finally:
            await wiring.aclose()

    try:
        keys = asyncio.run(run())
    except NamespaceInUse as exc:
        raise CliError(str(exc)) from None
    if json_out:
        print_json({"namespace": name, "keys": keys})
    else:
        console().print(f"namespace {name!r} dropped: {keys} key(s), its queues and exchanges")
