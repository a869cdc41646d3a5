"""The bench's extension: it adds `saga bench` to the command line."""

from collections.abc import Mapping
from typing import Final

import typer

from saga.extensions import Extension


def _commands() -> Mapping[str, typer.Typer]:
    from bench.cli import bench

    # A group of no subcommands whose callback is the command: `saga bench [OPTIONS]`.
    app = typer.Typer(help="Measure order sagas on the real servers.", subcommand_metavar="")
    app.callback(invoke_without_command=True)(bench)
    return {"bench": app}


BENCH: Final = Extension(name="bench", commands=_commands)
