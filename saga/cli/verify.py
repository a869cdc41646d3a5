"""`saga definitions verify FILE`: walk every path of a definition, without servers."""

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from saga.cli.output import CliError, Json, console, print_json, settings
from saga.core.definition import InputError
from saga.core.document import DefinitionError
from saga.extensions import selected
from saga.participant.check_samples import SampleError
from saga.verify.explore import MAX_PATHS, SAMPLES
from saga.verify.testing import DefinitionPaths
from saga.verify.verdict import Verdict

# Exit codes: the definition holds; an invariant breaks or a failed end is not accepted;
# the definition (or what was given with it) cannot be verified at all.
HOLDS, BREAKS, INVALID = 0, 1, 2


def verify_definition(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE", exists=True, dir_okay=False, readable=True, help="A definition."
        ),
    ],
    accept_failed: Annotated[
        list[str] | None,
        typer.Option(
            "--accept-failed",
            metavar="STEP",
            help="A saga may end failed because of this step (its compensation failed, or "
            "it did not finish past the pivot): a human finishes it. Repeatable.",
        ),
    ] = None,
    inputs: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            metavar="JSON",
            help="An input to start sagas on (repeatable); default: made up from the "
            "input schema, one for each value of an enumerated field a condition reads.",
        ),
    ] = None,
    max_paths: Annotated[
        int,
        typer.Option(
            min=1,
            help="Walk every path if there are at most this many (shared between the "
            "inputs); else every path with as many faults as fit, and a sample.",
        ),
    ] = MAX_PATHS,
    samples: Annotated[
        int, typer.Option(min=0, help="Paths sampled where not every path is walked.")
    ] = SAMPLES,
    seed: Annotated[int, typer.Option(help="The seed of the sampled paths.")] = 0,
    json_out: Json = False,
) -> None:
    """Walk every path of a definition (each answer each participant can give, timers on
    a simulated clock) and check the invariants on each; print the end states."""
    try:
        catalogue = selected(settings(servers=False)).catalogue
        given = [_given(text) for text in inputs or []]
        walker = DefinitionPaths.from_file(file, catalogue, inputs=given)
    except DefinitionError as exc:
        raise CliError(str(exc), usage=True) from None
    except SampleError as exc:
        raise CliError(f"{exc} (--input JSON)", usage=True) from None
    except InputError as exc:
        raise CliError(f"Invalid value for '--input': {exc}", usage=True) from None
    definition = walker.definition
    steps = {s.name for s in definition.steps}
    unknown = sorted(set(accept_failed or []) - steps)
    if unknown:
        raise CliError(
            f"--accept-failed: {', '.join(unknown)}: no such step of {definition.name}",
            usage=True,
        )
    verdict = walker.verify(
        accept_failed=accept_failed or (), max_paths=max_paths, samples=samples, seed=seed
    )
    if json_out:
        print_json(verdict.to_json())
    else:
        _show(verdict)
    if not verdict.ok:
        raise typer.Exit(BREAKS)


def _given(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"--input is not JSON: {exc.msg} at character {exc.pos}", usage=True
        ) from None
    if not isinstance(value, dict):
        raise CliError("--input must be a JSON object", usage=True)
    return value


def _show(verdict: Verdict) -> None:
    out = console()
    out.print(f"{verdict.name} v{verdict.version}: {verdict.walked} paths walked")
    for covered in verdict.coverage:
        out.print(f"  {covered}")
    table = Table("end state", "paths", "accepted", "shortest path")
    for end in verdict.ends:
        table.add_row(end.end, str(end.paths), "yes" if end.acceptable else "NO", str(end.shortest))
    out.print(table)
    for broken in verdict.broken:
        out.print(f"invariant broken ({broken.paths} paths): {broken.invariant}")
        out.print(f"  shortest: {broken.shortest}")
    for end in verdict.unaccepted:
        out.print(f"not accepted: the saga can end {end.end!r}, e.g. {end.shortest}")
        blamed = ", ".join(sorted(end.shortest.blamed)) or "its steps"
        out.print(f"  (if a human may finish it, mark it: --accept-failed for {blamed})")
    out.print("verified: every invariant holds" if verdict.ok else "NOT verified")
