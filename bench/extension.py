"""The bench's extension: it adds `saga bench` to the command line."""

from collections.abc import Mapping
from typing import Final

import typer

from saga.extensions import Extension


def _commands() -> Mapping[str, typer.Typer]:
    from bench.cli import bench, flood

    # A group of no subcommands whose callback is the command: `saga bench [OPTIONS]`.
    app = typer.Typer(help="Measure order sagas on the real servers.", subcommand_metavar="")
    app.callback(invoke_without_command=True)(bench)
    flooding = typer.Typer(
        help="Flood the auth service with wrong passwords; measure what keeps working.",
        subcommand_metavar="",
    )
    flooding.callback(invoke_without_command=True)(flood)
    return {"bench": app, "bench-flood": flooding}


BENCH: Final = Extension(name="bench", commands=_commands)
