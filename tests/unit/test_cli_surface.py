"""The command line's surface as the docs promise it: every data and inspection command
takes --json."""

from typing import Any

import typer

from saga.cli.main import app

# Commands that run a process of the system: they print logs, not data.
PROCESSES = {
    "saga auth",
    "saga api",
    "saga orchestrator",
    "saga service",
    "saga participant run",
    "saga up",
}


def commands(command: Any, path: str) -> dict[str, Any]:
    """Every command under click's `command` by its path (`saga dlq list`), groups
    included (typer carries its own click: its classes are not the click package's)."""
    found = {path: command}
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            found |= commands(sub, f"{path} {name}")
    return found


def test_every_data_and_inspection_command_takes_json() -> None:
    everything = commands(typer.main.get_command(app), "saga")
    runnable = {
        path: command
        for path, command in everything.items()
        # A group runs nothing itself, unless it runs a process (`saga auth`).
        if not hasattr(command, "commands") or command.invoke_without_command
    }
    assert set(runnable) >= PROCESSES, sorted(runnable)
    without = sorted(
        path
        for path, command in runnable.items()
        if path not in PROCESSES and not any("--json" in param.opts for param in command.params)
    )
    assert without == [], f"no --json: {without}"
