"""Structured logging: JSON lines for machines, readable lines on a terminal."""

import logging
import sys
from typing import TextIO

import structlog

from saga import tracing
from saga.settings import Settings


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> None:
    """Set up structlog once per process; the standard library's loggers (uvicorn,
    aio-pika) are rendered the same way."""
    out = stream or sys.stderr
    as_json = settings.log_format == "json" or (settings.log_format == "auto" and not out.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        tracing.log_fields,  # trace_id and span_id of the span in progress, when traced
    ]
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries speak up only when something is wrong; aio-pika and aiormq narrate every
    # reconnect (with tracebacks) at warning, which our own lines already say.
    root.setLevel(max(level, logging.WARNING))
    for chatty in ("aiormq", "aio_pika"):
        logging.getLogger(chatty).setLevel(max(level, logging.ERROR))
