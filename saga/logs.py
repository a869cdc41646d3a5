"""Structured logging: JSON lines for machines, readable lines on a terminal."""

import logging
import sys

import structlog

from saga.settings import Settings


def configure_logging(settings: Settings, *, stream: object = None) -> None:
    """Set up structlog once per process, from settings."""
    out = stream or sys.stderr
    as_json = settings.log_format == "json" or (
        settings.log_format == "auto" and not getattr(out, "isatty", lambda: False)()
    )
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[settings.log_level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=out),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    # uvicorn and aio-pika log through the standard library; keep them at warning.
    logging.basicConfig(level=logging.WARNING, stream=out)  # type: ignore[arg-type]
