"""CLI output: rich tables for people, JSON for scripts, one-line errors."""

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console

from saga.connections import AnyRedis, redis_client
from saga.handling import INFRASTRUCTURE_ERRORS
from saga.settings import Settings, load_settings
from saga.transport import Transport

if TYPE_CHECKING:
    from saga.bootstrap import Wiring

T = TypeVar("T")
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


class CliError(Exception):
    """A problem the user can act on: printed as one line, exit code 1 (2 for a usage
    problem: the command was not given what it needs)."""

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.code = 2 if usage else 1


def console() -> Console:
    """A console for tables; plain and wide when the output is not a terminal. What it
    prints is data (ids, keys, reasons, anyone's text): printed as it is, never read as
    rich markup (`[red]`) or emoji shortcodes (`:two:`)."""
    tty = sys.stdout.isatty()
    return Console(
        no_color=bool(os.environ.get("NO_COLOR")) or not tty,
        highlight=False,
        markup=False,
        emoji=False,
        width=None if tty else 200,
    )


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one error line on stderr and exit."""
    print(f"saga: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def print_json(value: Any) -> None:
    """One JSON document on stdout."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    print(json.dumps(value, indent=2, default=str))


def settings(*, servers: bool = True) -> Settings:
    """The settings from the environment, every one checked before anything connects
    (SettingsError names each bad one); `servers=False` for a command that uses none."""
    return load_settings(servers=servers)


async def connect_or_warn(transport: Transport, meanwhile: str) -> bool:
    """Connect to RabbitMQ; if it is away, say on stderr what happens meanwhile (the
    command goes on without it). Whether it connected."""
    try:
        await transport.connect()
    except INFRASTRUCTURE_ERRORS:
        print(f"saga: RabbitMQ unreachable; {meanwhile}", file=sys.stderr)
        return False
    return True


def with_redis(work: Callable[[AnyRedis, Settings], Awaitable[T]]) -> T:
    """Run one piece of async work with a Redis client from settings, then close it."""
    config = settings()

    async def run() -> T:
        redis = redis_client(config)
        try:
            return await work(redis, config)
        finally:
            await redis.aclose()

    return asyncio.run(run())


def with_wiring(work: "Callable[[Wiring], Awaitable[T]]") -> T:
    """Run one piece of async work on the object graph the settings make, then close it."""
    from saga.bootstrap import Wiring

    config = settings()

    async def run() -> T:
        wiring = Wiring(config)
        try:
            # On a Redis Cluster: look for the sagas where they are, or say so.
            await wiring.store.check_layout()
            return await work(wiring)
        finally:
            await wiring.aclose()

    return asyncio.run(run())


def traced(service: str) -> None:
    """Trace this process as the OTEL_* variables say (`service` unless
    OTEL_SERVICE_NAME names it); a setting it cannot follow is one line."""
    from saga import tracing

    try:
        tracing.configure(service)
    except tracing.TracingError as exc:
        raise CliError(str(exc)) from None
