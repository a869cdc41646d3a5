"""`saga definitions ...` and `saga start`: register saga types, and start any of them."""

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from saga.bootstrap import Wiring
from saga.cli import values
from saga.cli.output import CliError, Json, connect_or_warn, console, print_json, with_wiring
from saga.cli.verify import verify_definition
from saga.core.definition import InputError
from saga.core.document import DefinitionError, DefinitionSpec
from saga.definitions import read_file
from saga.handling import INFRASTRUCTURE_ERRORS
from saga.logs import configure_logging
from saga.registry import DefinitionConflict, DefinitionInUse
from saga.store import NoSuchDefinition
from saga.transport import Transport
from saga.views import definition_entries

definitions_app = typer.Typer(help="Register saga types and their versions.", no_args_is_help=True)

Name = Annotated[str, typer.Argument(metavar="NAME", help="The saga type.")]
REFUSED = (DefinitionError, DefinitionConflict, DefinitionInUse, NoSuchDefinition)


def _run(work: Any) -> Any:
    try:
        return with_wiring(work)
    except REFUSED as exc:
        raise CliError(str(exc)) from None


@definitions_app.command("apply")
def apply(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            exists=True,
            dir_okay=False,
            readable=True,
            help="A definition, YAML or JSON.",
        ),
    ],
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check it, against what is registered too, and say what apply would do; "
            "register nothing.",
        ),
    ] = False,
    json_out: Json = False,
) -> None:
    """Check a definition document and register it as a new version."""
    try:
        spec = read_file(file)
    except DefinitionError as exc:
        raise CliError(str(exc)) from None

    async def work(wiring: Wiring) -> str:
        outcome = await wiring.registry.apply(spec, dry_run=dry_run)
        if dry_run:
            return outcome
        transport = wiring.transport("cli")
        meanwhile = "every orchestrator declares the participants' queues within seconds"
        try:  # the queues of its participants, so that commands wait there for them
            if await connect_or_warn(transport, meanwhile):
                await transport.declare_participants(spec.named_participants())
                await _warn_of_unread_queues(transport, spec)
        except INFRASTRUCTURE_ERRORS:
            print(f"saga: RabbitMQ went away; {meanwhile}", file=sys.stderr)
        finally:
            await transport.close()
        return outcome

    outcome = _run(work)
    result = {"name": spec.name, "version": spec.version, "outcome": outcome}
    if json_out:
        print_json(result | {"dry_run": True} if dry_run else result)
        return
    if outcome == "unchanged":
        what = "already registered, unchanged"
    else:
        what = "would be registered (dry run: nothing registered)" if dry_run else "registered"
    console().print(f"{spec.name} version {spec.version}: {what}")


async def _warn_of_unread_queues(transport: Transport, spec: DefinitionSpec) -> None:
    """Say which participant's queue nothing reads yet: not started, or a mistyped name
    (whose commands would wait there until their steps time out)."""
    for name in spec.named_participants():
        if name in spec.participants:
            continue  # reached over HTTP: no queue to read
        queue = transport.topology.participant_queue(name)
        if await transport.consumers(queue) == 0:
            print(
                f"saga: nothing reads {queue} yet: start participant {name!r} "
                "(or check the name: its steps time out until something answers)",
                file=sys.stderr,
            )


@definitions_app.command("list")
def list_definitions(json_out: Json = False) -> None:
    """Every saga type, with its versions (the latest is the one new sagas start on)."""

    async def work(wiring: Wiring) -> list[dict[str, Any]]:
        registry = wiring.registry
        # As GET /definitions lists them for an admin: the operator may start anything.
        return [
            entry.model_dump(mode="json")
            for entry in await definition_entries(registry, may_start=lambda _: True)
        ]

    found = _run(work)
    if json_out:
        print_json(found)
        return
    table = Table("type", "latest", "versions", "built in")
    for e in found:
        table.add_row(
            e["name"],
            str(e["latest"]),
            ", ".join(map(str, e["versions"])),
            ", ".join(map(str, e["builtin"])),
        )
    console().print(table)


@definitions_app.command("show")
def show(
    name: Name,
    version: Annotated[int | None, typer.Option(min=1, help="Default: the latest.")] = None,
    _json_out: Json = False,  # the document is JSON either way
) -> None:
    """Print a definition version's document (JSON)."""

    async def work(wiring: Wiring) -> dict[str, Any]:
        registry = wiring.registry
        chosen = version
        if chosen is None:
            entry = await registry.entry(name)
            if entry is None:
                raise NoSuchDefinition(name)
            chosen = entry.latest
        spec = await registry.document(name, chosen)
        if spec is None:
            raise NoSuchDefinition(name, chosen)
        return spec.model_dump(mode="json")

    print_json(_run(work))


@definitions_app.command("delete")
def delete(
    name: Name,
    version: Annotated[int, typer.Option(min=1, help="The version to delete.")],
    json_out: Json = False,
) -> None:
    """Delete an applied version that no saga may still need."""

    async def work(wiring: Wiring) -> None:
        await wiring.registry.delete(name, version)

    _run(work)
    if json_out:
        print_json({"name": name, "version": version, "outcome": "deleted"})
    else:
        console().print(f"{name} version {version}: deleted")


def start(
    saga_type: Annotated[str, typer.Argument(metavar="TYPE", help="The saga type.")],
    input_json: Annotated[
        str, typer.Option("--input", metavar="JSON", help="The saga's input, a JSON object.")
    ],
    customer: Annotated[
        str,
        typer.Option(
            metavar="EMAIL",
            parser=values.email,
            help="Whose saga it is (an email): whom its steps act for.",
        ),
    ],
    json_out: Json = False,
) -> None:
    """Start a saga of any registered type, on its latest version."""
    try:
        saga_input = json.loads(input_json)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"--input is not JSON: {exc.msg} at character {exc.pos}", usage=True
        ) from None
    if not isinstance(saga_input, dict):
        raise CliError("--input must be a JSON object", usage=True)

    async def work(wiring: Wiring) -> dict[str, Any]:
        configure_logging(wiring.settings.model_copy(update={"log_level": "warning"}))
        transport = wiring.transport("cli")
        try:
            await connect_or_warn(transport, "the orchestrator's relay will send the first command")
            dispatcher = wiring.dispatcher(transport)
            starter = wiring.starter(dispatcher)
            try:
                definition = await wiring.registry.latest(saga_type)
            except NoSuchDefinition as exc:
                known = ", ".join(e.name for e in await wiring.registry.entries()) or "none"
                raise CliError(f"{exc} (the types: {known})") from None
            try:
                state = await starter.start(definition, customer=customer, saga_input=saga_input)
            except InputError as exc:  # the type's input schema refuses what was typed
                raise CliError(f"Invalid value for '--input': {exc}", usage=True) from None
            await dispatcher.settle()
        finally:
            await transport.close()
        return {  # named as the API names them (GET /sagas/{id})
            "saga_id": state.saga_id,
            "type": state.saga_type,
            "definition_version": state.definition_version,
            "status": state.status,
        }

    result = _run(work)
    if json_out:
        print_json(result)
    else:
        console().print(
            f"saga {result['saga_id']} ({result['type']} v{result['definition_version']}): "
            f"{result['status']}"
        )


definitions_app.command("verify")(verify_definition)
