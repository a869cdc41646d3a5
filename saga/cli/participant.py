"""`saga participant ...`: run a participant written on the SDK, and check that any running
participant keeps the wire protocol."""

import asyncio
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from contracts.topology import check_participant as valid_participant
from saga.bootstrap import Wiring
from saga.cli.output import CliError, Json, console, print_json, settings, traced, with_wiring
from saga.core.contracts import Catalogue
from saga.core.document import TYPE_PATTERN, DefinitionSpec
from saga.extensions import selected
from saga.participant.check import CheckError, Report, StepSample, check_participant
from saga.participant.check_samples import Models, SampleError, learn_steps, named_steps
from saga.registry import DefinitionRegistry

participant_app = typer.Typer(help="Run and check participants.", no_args_is_help=True)

_STEP = re.compile(rf"{TYPE_PATTERN[:-1]}(:{TYPE_PATTERN[1:-1]})?$")


@dataclass(frozen=True)
class Given:
    """A command's payload as the user gave it."""

    command: str
    payload: dict[str, Any]


def _given(text: str) -> Given:
    """`COMMAND=JSON`: a command type and its payload, a JSON object."""
    command, equals, written = text.partition("=")
    if not equals or not re.fullmatch(TYPE_PATTERN, command):
        raise typer.BadParameter(
            f"{text[:60]!r}: write COMMAND=JSON, e.g. 'Insure={{\"value\": 5}}'"
        )
    try:
        payload = json.loads(written)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"{command}: not JSON: {exc.msg} at character {exc.pos}") from None
    if not isinstance(payload, dict):
        raise typer.BadParameter(f"{command}: the payload must be a JSON object")
    return Given(command, payload)


def _step(text: str) -> str:
    """`COMMAND` or `COMMAND:COMPENSATION`."""
    if not _STEP.fullmatch(text):
        raise typer.BadParameter(f"{text[:60]!r}: write COMMAND or COMMAND:COMPENSATION")
    return text


def _samples(path: Path) -> dict[str, dict[str, Any]]:
    """A file of sample payloads: a YAML or JSON object of command type -> payload."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"Invalid value for '--samples': {path}: {exc}", usage=True) from None
    except yaml.YAMLError as exc:
        raise CliError(
            f"Invalid value for '--samples': {path}: {_yaml_problem(exc)}", usage=True
        ) from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, dict) for k, v in data.items()
    ):
        raise CliError(
            f"Invalid value for '--samples': {path}: an object of command type -> payload "
            "object expected",
            usage=True,
        )
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in one line: where, and what (PyYAML's own text spans several)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "not YAML"
    if mark is None:
        return str(problem)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def _unused(given: list[Given], steps: list[StepSample], name: str) -> None:
    """A --payload for a command no step sends is a mistyped name: said, not ignored."""
    sent = {a.command for s in steps for a in (s.action, s.compensation) if a is not None}
    for g in given:
        if g.command not in sent:
            raise CliError(
                f"Invalid value for '--payload': no step of {name} takes {g.command} "
                f"(it is sent: {', '.join(sorted(sent))})",
                usage=True,
            )


def _models(catalogue: Catalogue, participant: str) -> Models:
    """The participant's command models, where an extension registered its contract (the
    check makes up payloads from them)."""
    contract = catalogue.contract(participant)
    return contract.commands if contract is not None else {}


async def _documents(registry: DefinitionRegistry) -> list[DefinitionSpec]:
    """Every version of every definition of the namespace, built in or applied."""
    found = []
    for entry in await registry.entries():
        for version in entry.versions:
            document = await registry.document(entry.name, version)
            if document is not None:
                found.append(document)
    return found


def _table(report: Report) -> Table:
    table = Table("case", "command", "result", "why")
    for case in report.cases:
        table.add_row(case.case, case.command or "-", case.outcome, case.reason)
    return table


@participant_app.command("check")
def check(
    name: Annotated[
        str,
        typer.Argument(metavar="NAME", help="The participant: it takes commands from <ns>.NAME."),
    ],
    payload: Annotated[
        list[Given] | None,
        typer.Option(
            metavar="COMMAND=JSON",
            parser=_given,
            help="The payload to send with a command type (repeatable); the others are "
            "made up from their contract or their definition's template.",
        ),
    ] = None,
    samples: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            exists=True,
            dir_okay=False,
            readable=True,
            help="Payloads from a file: a YAML or JSON object of command type -> payload "
            "(--payload wins over it).",
        ),
    ] = None,
    step: Annotated[
        list[str] | None,
        typer.Option(
            metavar="COMMAND[:COMPENSATION]",
            parser=_step,
            help="Send these commands (repeatable) instead of those of the definitions "
            "naming NAME; give their payloads with --payload.",
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(min=0.1, max=600, help="Seconds to wait for each answer or dead letter."),
    ] = 10.0,
    json_out: Json = False,
) -> None:
    """Check that a running participant keeps the wire protocol, over the wire: repeats,
    retries, a compensation first, an unknown command, bad bodies, ids.

    Exits 1 if any case fails."""
    try:
        valid_participant(name)
    except ValueError as exc:
        raise CliError(f"Invalid value for 'NAME': {exc}", usage=True) from None
    given = _samples(samples) if samples else {}
    given |= {g.command: g.payload for g in payload or []}
    config = settings()

    async def steps_from_definitions(wiring: Wiring) -> list[StepSample]:
        documents = await _documents(wiring.registry)
        models = _models(wiring.catalogue, name)
        return learn_steps(name, documents, payloads=given, models=models)

    try:
        if step:
            models = _models(selected(config).catalogue, name)
            steps = named_steps(step, payloads=given, models=models)
        else:
            steps = with_wiring(steps_from_definitions)
    except SampleError as exc:
        raise CliError(str(exc), usage=True) from None
    if not steps:
        raise CliError(
            f"no definition in namespace {config.namespace!r} names participant {name!r}: "
            "name its commands with --step COMMAND[:COMPENSATION]",
            usage=True,
        )
    _unused(payload or [], steps, name)
    try:
        report = asyncio.run(
            check_participant(
                name,
                steps,
                rabbitmq_url=config.rabbitmq_url,
                namespace=config.namespace,
                within=timeout,
            )
        )
    except CheckError as exc:
        raise CliError(str(exc)) from None
    for left in report.left_behind:
        print(f"saga: dead letter {left} the check caused is still parked", file=sys.stderr)
    if json_out:
        print_json(report.as_json())
    else:
        console().print(_table(report))
        counts = {
            o: sum(c.outcome == o for c in report.cases)
            for o in ("passed", "failed", "inconclusive")
        }
        console().print(
            f"{name}: {counts['passed']} passed, {counts['failed']} failed, "
            f"{counts['inconclusive']} inconclusive (run {report.run})"
        )
    if not report.passed:
        raise typer.Exit(1)


MetricsPort = Annotated[
    int | None, typer.Option(help="Serve Prometheus metrics on this port (default: none).")
]
MetricsHost = Annotated[str, typer.Option(help="Address for the metrics port.")]


@participant_app.command("run")
def run(
    target: Annotated[
        str,
        typer.Argument(
            metavar="MODULE:ATTRIBUTE",
            help="Where the Participant is: a module importable from here, and its name "
            "in it (examples.shipping.participant:carrier).",
        ),
    ],
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
) -> None:
    """Run a participant written on the SDK: consume its commands until SIGTERM or Ctrl-C
    (any number of replicas may run)."""
    from saga.bootstrap import run_until_signalled, serve_metrics, serve_participant
    from saga.logs import configure_logging
    from saga.participant import LoadError, load_participant

    config = settings()
    try:
        participant = load_participant(target)
    except LoadError as exc:
        raise CliError(str(exc), usage=True) from None
    configure_logging(config)
    traced(f"saga-{participant.name}")
    serve_metrics(metrics_port, metrics_host)
    run_until_signalled(config, lambda stop: serve_participant(participant, config, stop))
