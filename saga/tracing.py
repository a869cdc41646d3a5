"""OpenTelemetry traces: one trace per saga, across every process.

Off unless `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`): then each
process exports its spans the standard way (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, ...). Off, every function here returns at
once and nothing is imported from the SDK.

A saga's trace id is chosen when it starts (the caller's, if the request carried a
`traceparent`) and kept in its state. The saga's start is a span of its own whose id is
derived from the saga id (`root_span_id`), so work that has no parent at hand (a timer
firing, the outbox relay, a replay or cancel) hangs under it, in the same trace. A
message's producer span travels to its consumer in the AMQP `traceparent` header; a
participant that does not copy it is linked through the envelope's `traceparent`.
"""

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from contracts.envelope import Envelope
from contracts.idempotency import parse_idempotency_key

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.id_generator import IdGenerator

_PROPAGATOR: Final = TraceContextTextMapPropagator()
_SAMPLED: Final = TraceFlags(TraceFlags.SAMPLED)
# Ids to give the next span started in this context (the saga's start).
_FORCED_SPAN_ID: ContextVar[int | None] = ContextVar("forced_span_id", default=None)
_FORCED_TRACE_ID: ContextVar[int | None] = ContextVar("forced_trace_id", default=None)
Attributes = Mapping[str, AttributeValue | None]


class TracingError(ValueError):
    """The OTEL_* settings ask for something this engine cannot export to."""


class _State:
    tracer: trace.Tracer | None = None
    provider: "TracerProvider | None" = None


_state = _State()
# What every span function gives when tracing is off: one shared, reusable no-op.
_OFF: Final[AbstractContextManager[None]] = nullcontext()


def enabled() -> bool:
    """Whether this process records spans."""
    return _state.tracer is not None


def configure(default_service: str) -> bool:
    """Set up tracing for this process as the OTEL_* variables say; `default_service`
    names it unless OTEL_SERVICE_NAME does. Returns whether spans are recorded."""
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "none").split(",")]
    names = [n for n in names if n and n != "none"]
    if not names or _state.tracer is not None:
        return _state.tracer is not None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    service = os.environ.get("OTEL_SERVICE_NAME") or default_service
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: service}), id_generator=_ids()
    )
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    trace.set_tracer_provider(provider)
    _instrument_libraries()
    _state.provider = provider
    _state.tracer = provider.get_tracer("saga")
    return True


def install(provider: "TracerProvider") -> None:
    """Record spans with this provider (tests, with the SDK's in-memory exporter); its
    id generator must be `id_generator()`'s."""
    _state.provider = provider
    _state.tracer = provider.get_tracer("saga")


def uninstall() -> None:
    """Record no spans (tests)."""
    _state.provider = None
    _state.tracer = None


def shutdown() -> None:
    """Export what is left; for a process that stops."""
    if _state.provider is not None:
        _state.provider.shutdown()


def id_generator() -> "IdGenerator":
    """The SDK id generator this module needs (it can give the saga's start its id)."""
    return _ids()


def _ids() -> "IdGenerator":
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class ForcedIds(RandomIdGenerator):
        def generate_span_id(self) -> int:
            forced = _FORCED_SPAN_ID.get()
            return forced if forced is not None else super().generate_span_id()

        def generate_trace_id(self) -> int:
            forced = _FORCED_TRACE_ID.get()
            return forced if forced is not None else super().generate_trace_id()

    return ForcedIds()


def _exporter(name: str) -> "SpanExporter":
    if name == "otlp":
        protocol = os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        )
        if protocol != "http/protobuf":
            raise TracingError(f"OTLP protocol {protocol!r}: only http/protobuf is supported")
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    raise TracingError(f"OTEL_TRACES_EXPORTER {name!r}: use otlp, console or none")


def _instrument_libraries() -> None:
    """Spans for outgoing HTTP (auth, HTTP participants) and Redis commands."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    HTTPXClientInstrumentor().instrument()
    RedisInstrumentor().instrument()


def instrument_app(app: "FastAPI") -> None:
    """Server spans for a FastAPI app, continuing a caller's `traceparent`."""
    if _state.tracer is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls="health,ready,metrics")


# --- the saga's trace ---------------------------------------------------------------


def root_span_id(saga_id: str) -> int:
    """The span id of the saga's start, from its id: any process can name it."""
    digest = hashlib.blake2b(saga_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") or 1


def current_trace_id() -> str | None:
    """The trace id of the span in progress (as 32 hex digits), if any."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def _saga_root(trace_id: str, saga_id: str) -> Context:
    root = SpanContext(
        int(trace_id, 16), root_span_id(saga_id), is_remote=True, trace_flags=_SAMPLED
    )
    return trace.set_span_in_context(NonRecordingSpan(root))


def _in_saga(trace_id: str | None, saga_id: str) -> tuple[Context | None, list[Link]]:
    """Where a span of the saga goes: under the span in progress if it is of the saga's
    trace, else under the saga's start, linked to the span in progress."""
    current = trace.get_current_span().get_span_context()
    if trace_id is None or (current.is_valid and format(current.trace_id, "032x") == trace_id):
        return None, []
    return _saga_root(trace_id, saga_id), [Link(current)] if current.is_valid else []


def _saga_attributes(
    saga_id: str, saga_type: str | None, extra: Attributes
) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {"saga.id": saga_id}
    if saga_type is not None:
        attributes["saga.type"] = saga_type
    attributes.update((k, v) for k, v in extra.items() if v is not None)
    return attributes


def saga_started(
    saga_id: str, saga_type: str, trace_id: str | None, began: datetime
) -> AbstractContextManager[Span | None]:
    """The span of a saga's start (made once its first events are durable), with the id
    every later span without a parent at hand hangs under: a child of the span in
    progress if that is of the saga's trace (the HTTP request), else the trace's root."""
    tracer = _state.tracer
    if tracer is None or trace_id is None:
        return _OFF
    return _saga_started(tracer, saga_id, saga_type, trace_id, began)


@contextmanager
def _saga_started(
    tracer: trace.Tracer, saga_id: str, saga_type: str, trace_id: str, began: datetime
) -> Iterator[Span]:
    tokens = _FORCED_SPAN_ID.set(root_span_id(saga_id)), _FORCED_TRACE_ID.set(int(trace_id, 16))
    try:
        span = tracer.start_span(
            f"saga start {saga_type}",
            context=None if current_trace_id() == trace_id else Context(),
            attributes=_saga_attributes(saga_id, saga_type, {}),
            start_time=int(began.timestamp() * 1e9),
        )
    finally:
        _FORCED_SPAN_ID.reset(tokens[0])
        _FORCED_TRACE_ID.reset(tokens[1])
    with trace.use_span(span, end_on_exit=True):
        yield span


def saga_span(
    name: str,
    *,
    saga_id: str,
    trace_id: str | None,
    saga_type: str | None = None,
    attributes: Attributes | None = None,
) -> AbstractContextManager[Span | None]:
    """A span of the saga's work (a timer firing, a replay, a cancel) in its trace."""
    tracer = _state.tracer
    if tracer is None or trace_id is None:
        return _OFF
    parent, links = _in_saga(trace_id, saga_id)
    return tracer.start_as_current_span(
        name,
        context=parent,
        links=links,
        attributes=_saga_attributes(saga_id, saga_type, attributes or {}),
    )


def producer(
    envelope: Envelope,
    *,
    exchange: str,
    routing_key: str,
    queue: str,
    attributes: Attributes | None = None,
) -> AbstractContextManager[Span | None]:
    """The span of publishing one message (current while it is published, so that the
    transport puts it in the message's `traceparent` header)."""
    tracer = _state.tracer
    if tracer is None:
        return _OFF
    trace_id = _trace_of(envelope)
    parent, links = _in_saga(trace_id, envelope.saga_id)
    key = parse_idempotency_key(envelope.idempotency_key)
    if key is not None:
        attributes = {"saga.step": key.step, "saga.action": key.action, **(attributes or {})}
    return tracer.start_as_current_span(
        f"publish {queue}",
        context=parent,
        kind=SpanKind.PRODUCER,
        links=links,
        attributes=_message_attributes(envelope, exchange, routing_key, "send", "publish")
        | _saga_attributes(envelope.saga_id, None, attributes or {}),
    )


def consumer(
    body: bytes, headers: Mapping[str, Any], *, queue: str
) -> AbstractContextManager[Span | None]:
    """The span of processing one delivered message, under its producer's span (the
    `traceparent` header), else under the one its envelope names; a body that is not
    an envelope gets a span all the same, with what could be read."""
    tracer = _state.tracer
    if tracer is None:
        return _OFF
    fields = _peek(body)
    parent: Context | None = None
    links: list[Link] = []
    header, envelope = headers.get("traceparent"), fields.get("traceparent")
    if isinstance(header, str):  # the producer span's own context
        parent = _PROPAGATOR.extract({"traceparent": header})
    elif isinstance(envelope, str) and isinstance(fields.get("saga_id"), str):
        # A sender that does not copy the header: its span is unknown, so under the
        # saga's start, linked to what the envelope names.
        sent = trace.get_current_span(_PROPAGATOR.extract({"traceparent": envelope}))
        context = sent.get_span_context()
        if context.is_valid:
            parent = _saga_root(format(context.trace_id, "032x"), fields["saga_id"])
            links = [Link(context)]
    attributes: dict[str, AttributeValue | None] = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": queue,
        "messaging.consumer.group.name": queue,
        "messaging.message.id": _text(fields.get("message_id")),
        "messaging.message.conversation_id": _text(fields.get("correlation_id")),
        "messaging.message.body.size": len(body),
        "saga.id": _text(fields.get("saga_id")),
        "saga.message.type": _text(fields.get("type")),
    }
    return tracer.start_as_current_span(
        f"process {queue}",
        context=parent,
        links=links,
        kind=SpanKind.CONSUMER,
        attributes={k: v for k, v in attributes.items() if v is not None},
    )


def annotate_current(attributes: Attributes) -> None:
    """Add attributes to the span in progress (nothing when tracing is off)."""
    if _state.tracer is not None:
        annotate(trace.get_current_span(), attributes)


def _peek(body: bytes) -> dict[str, Any]:
    try:
        fields = json.loads(body)
    except ValueError:
        return {}
    return fields if isinstance(fields, dict) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def handling(
    name: str, attributes: Attributes | None = None
) -> AbstractContextManager[Span | None]:
    """A span of the work in progress's own (a participant's handler)."""
    tracer = _state.tracer
    if tracer is None:
        return _OFF
    clean = {k: v for k, v in (attributes or {}).items() if v is not None}
    return tracer.start_as_current_span(name, attributes=clean)


def annotate(span: Span | None, attributes: Attributes) -> None:
    """Add attributes to a span (nothing when tracing is off)."""
    if span is not None:
        span.set_attributes({k: v for k, v in attributes.items() if v is not None})


def message_headers() -> dict[str, str] | None:
    """The `traceparent` header of the span in progress, for a message published now."""
    if _state.tracer is None:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier or None


def log_fields(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: `trace_id` and `span_id` of the span in progress."""
    if _state.tracer is not None:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            event.setdefault("trace_id", format(context.trace_id, "032x"))
            event["span_id"] = format(context.span_id, "016x")
    return event


def _trace_of(envelope: Envelope) -> str | None:
    value = envelope.traceparent
    return value.split("-")[1] if value else None


def _message_attributes(
    envelope: Envelope, exchange: str, routing_key: str, operation: str, name: str
) -> dict[str, AttributeValue]:
    return {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": operation,
        "messaging.operation.name": name,
        "messaging.destination.name": exchange,
        "messaging.rabbitmq.destination.routing_key": routing_key,
        "messaging.message.id": envelope.message_id,
        "messaging.message.conversation_id": envelope.correlation_id,
        "saga.message.type": envelope.type,
    }
