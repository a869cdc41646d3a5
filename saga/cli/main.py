"""The `saga` command: every process and every operator command, one line of help each."""

import asyncio
import signal
import sys
from importlib.metadata import version as installed_version
from typing import Annotated

import structlog
import typer
from aio_pika.exceptions import AMQPConnectionError
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from contracts.envelope import first_error
from saga.cli import definitions, demo, dlq, ops, sagas, users, values
from saga.cli.namespace import namespace_app
from saga.cli.output import CliError, Json, fail, settings, traced
from saga.cli.participant import participant_app
from saga.cli.up import up
from saga.extensions import Extensions, named, selected
from saga.settings import SettingsError, extensions_setting, without_password
from saga.store import LayoutMismatch
from saga.transport import TransportUnavailable

Host = Annotated[str, typer.Option(help="Address to listen on.")]
PACKAGE = "saga-orchestrator"


def _print_version(wanted: bool) -> None:
    if wanted:
        print(f"saga {installed_version(PACKAGE)}")
        raise typer.Exit()


def _options(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print the installed version and exit.",
        ),
    ] = False,
) -> None:
    """An event-sourced saga orchestrator over RabbitMQ."""


def _serve(app_factory_path: str, host: str, port: int) -> None:
    import uvicorn

    from saga.eventloop import collector_for_serving, loop_name
    from saga.logs import configure_logging

    config = settings()
    configure_logging(config)
    traced(f"saga-{app_factory_path}")
    if app_factory_path == "api":
        from saga.api.app import create_app

        asgi = create_app(config)
    else:
        from saga.auth.app import create_auth_app
        from saga.connections import ping_redis

        if config.auth_secret is None:
            # The signing key is kept in Redis, so the service cannot start without it:
            # said here in one line, not in the traceback of a failed startup.
            asyncio.run(ping_redis(config))
        asgi = create_auth_app(config)
    from saga import tracing

    tracing.instrument_app(asgi)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again to the
    # handler it found: that handler ends the process with 0, a requested stop. Outside
    # uvicorn's serving (starting, or a failed start) SIGTERM ends the process too.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    log = structlog.get_logger(__name__)
    log.info(f"{app_factory_path} starting", host=host, port=port, namespace=config.namespace)
    try:
        with collector_for_serving():
            uvicorn.run(
                asgi,
                host=host,
                port=port,
                loop=loop_name(config.event_loop),
                log_config=None,
                access_log=False,
                lifespan="on",
            )
    finally:
        log.info(f"{app_factory_path} stopped")


def _exit_on_sigterm(*_: object) -> None:
    raise SystemExit(0)


def auth(
    ctx: typer.Context,
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 7002,
) -> None:
    """Run the auth service (token issue and verification)."""
    if ctx.invoked_subcommand is None:
        _serve("auth", host, port)


def add_user(
    email: Annotated[
        str, typer.Argument(metavar="EMAIL", parser=values.email, help="The user's email.")
    ],
    password: Annotated[
        str,
        typer.Option(
            metavar="PASSWORD",
            parser=values.password,
            help=f"The password ({values.MIN_PASSWORD} characters or more).",
        ),
    ],
    role: Annotated[
        list[str] | None,
        typer.Option(
            metavar="ROLE",
            parser=values.role,
            help="A role beyond customer: admin (repeatable). The user's roles become "
            "exactly these; without --role an existing user keeps its own.",
        ),
    ] = None,
    json_out: Json = False,
) -> None:
    """Create a user, or reset its password (keeping its roles unless --role is given)."""
    users.add_user(email, password, role or None, json_out)


def revoke(
    email: Annotated[
        str, typer.Argument(metavar="EMAIL", parser=values.email, help="The user's email.")
    ],
    json_out: Json = False,
) -> None:
    """Revoke every token of a user issued until now (they must sign in again)."""
    users.revoke(email, json_out)


def rotate_key(json_out: Json = False) -> None:
    """Make a new token signing key current; the previous one verifies until its tokens expire."""
    users.rotate_key(json_out)


def api(
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 7001,
) -> None:
    """Run the front door (HTTP API)."""
    _serve("api", host, port)


MetricsPort = Annotated[
    int | None, typer.Option(help="Serve Prometheus metrics on this port (default: none).")
]
MetricsHost = Annotated[str, typer.Option(help="Address for the metrics port.")]


def orchestrator(metrics_port: MetricsPort = None, metrics_host: MetricsHost = "127.0.0.1") -> None:
    """Run the orchestrator: apply replies, drive sagas, relay outboxes."""
    from saga.bootstrap import run_orchestrator, run_until_signalled, serve_metrics
    from saga.logs import configure_logging

    config = settings()
    configure_logging(config)
    traced("saga-orchestrator")
    serve_metrics(metrics_port, metrics_host)
    run_until_signalled(config, lambda stop: run_orchestrator(config, stop))


def service(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A participant an extension ships.")],
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
) -> None:
    """Run a participant service that an extension ships."""
    from saga.bootstrap import run_participant, run_until_signalled, serve_metrics
    from saga.logs import configure_logging

    config = settings()
    shipped = selected(config).participants
    if name not in shipped:
        raise CliError(
            f"Invalid value for 'NAME': {name!r} is not a participant the loaded extensions "
            f"ship ({', '.join(shipped) or 'none'})",
            usage=True,
        )
    configure_logging(config)
    traced(f"saga-{name}")
    serve_metrics(metrics_port, metrics_host)
    run_until_signalled(config, lambda stop: run_participant(name, config, stop))


def build(extensions: Extensions) -> typer.Typer:
    """The command line: the engine's commands, and those the extensions add."""
    app = typer.Typer(
        help="An event-sourced saga orchestrator over RabbitMQ.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    app.callback()(_options)
    auth_app = typer.Typer(help="Run the auth service, or manage its users.")
    auth_app.callback(invoke_without_command=True)(auth)
    auth_app.command("add-user")(add_user)
    auth_app.command("revoke")(revoke)
    auth_app.command("rotate-key")(rotate_key)
    app.add_typer(auth_app, name="auth")
    app.command()(api)
    app.command()(orchestrator)
    shipped = ", ".join(extensions.participants) or "none: no extension ships one"
    app.command(help=f"Run a participant service that an extension ships ({shipped}).")(service)
    app.command("demo", help="Run the whole system in this process, with no servers.")(demo.demo)
    app.command("list", help="List sagas, newest first.")(sagas.list_sagas)
    app.command("show", help="Show a saga's state and its event history with timings.")(
        sagas.show_saga
    )
    app.command("up", help="Run the whole system on local servers, one child process each.")(up)
    app.command("replay")(ops.replay)
    app.add_typer(dlq.dlq_app, name="dlq")
    app.add_typer(definitions.definitions_app, name="definitions")
    app.command("start", help="Start a saga of any registered type.")(definitions.start)
    app.add_typer(participant_app, name="participant")
    app.add_typer(namespace_app, name="namespace")
    for name, commands in extensions.commands().items():
        app.add_typer(commands, name=name)
    return app


def command_line() -> typer.Typer:
    """The command line with the extensions the settings name (SAGA_EXTENSIONS)."""
    return build(named(extensions_setting()))


def __getattr__(name: str) -> typer.Typer:
    # `saga.cli.main.app`: the command line as this environment's settings make it.
    if name == "app":
        return command_line()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Entry point: known problems end in one line on stderr, never a traceback."""
    try:
        code = command_line()(standalone_mode=False)
    except typer.Abort:
        sys.exit(130)
    except typer.TyperException as exc:  # click's usage errors, as typer raises them
        if type(exc).__name__ == "NoArgsIsHelpError":  # a group called alone: its help
            print(exc.format_message(), file=sys.stderr)
            sys.exit(2)
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "saga"
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        fail(f"{message} (see '{command} --help')", 2)
    except CliError as exc:
        fail(str(exc), exc.code)
    except LayoutMismatch as exc:  # on a Redis Cluster: the sagas are not where it looks
        fail(str(exc))
    except SettingsError as exc:
        for problem in exc.problems[:-1]:
            print(f"saga: error: {problem}", file=sys.stderr)
        fail(exc.problems[-1], 2)
    except ValidationError as exc:
        fail(f"invalid value {first_error(exc)}", 2)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        fail(f"cannot reach Redis ({settings_url('redis_url')}): {exc}")
    except (AMQPConnectionError, TransportUnavailable) as exc:
        # The transport's own error wraps the client's, which says what happened.
        fail(f"cannot reach RabbitMQ ({settings_url('rabbitmq_url')}): {exc.__cause__ or exc}")
    except RedisError as exc:
        fail(f"Redis error: {exc}")
    except OSError as exc:
        fail(f"{type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        sys.exit(130)
    if isinstance(code, int) and code:
        sys.exit(code)


def settings_url(name: str) -> str:
    """A server URL from settings, its password hidden."""
    try:
        return without_password(str(getattr(settings(), name)))
    except SettingsError:
        return "?"


if __name__ == "__main__":
    main()
