"""`saga participant`: run a participant written on the SDK."""

from typing import Annotated

import typer

from saga.cli.output import CliError, settings

participant_app = typer.Typer(
    help="Run a participant written on the SDK (see docs/participants.md).",
    no_args_is_help=True,
)

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
    """Run a participant: consume its commands until SIGTERM or Ctrl-C (any number of
    replicas may run)."""
    from saga.bootstrap import run_until_signalled, serve_metrics, serve_participant
    from saga.logs import configure_logging
    from saga.participant import LoadError, load_participant

    config = settings()
    try:
        participant = load_participant(target)
    except LoadError as exc:
        raise CliError(str(exc), usage=True) from None
    configure_logging(config)
    serve_metrics(metrics_port, metrics_host)
    run_until_signalled(config, lambda stop: serve_participant(participant, config, stop))
