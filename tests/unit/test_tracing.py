"""One trace per saga, recorded with the SDK's in-memory exporter on the embedded system
(the demo's: every process's code in this one, fakeredis, in-memory queues)."""

import asyncio
from collections.abc import Iterator
from io import StringIO

import pytest
import structlog
from fakeredis import FakeAsyncRedis
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from saga import tracing
from saga.bootstrap import Wiring
from saga.core.decide import CancelSaga
from saga.demo import DemoResult, run_demo
from saga.logs import configure_logging
from saga.memory import InMemoryTransport
from saga.settings import Settings
from tests.unit.sagas import order_input


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(id_generator=tracing.id_generator())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    yield exporter
    tracing.uninstall()


@pytest.fixture
def demo(spans: InMemorySpanExporter) -> DemoResult:
    settings = Settings(namespace="traced")
    return asyncio.run(run_demo(settings, orders=5, progress=lambda *_: None))


def of_saga(spans: InMemorySpanExporter, saga_id: str) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if (s.attributes or {}).get("saga.id") == saga_id]


def hexed(number: int, width: int) -> str:
    return format(number, f"0{width}x")


def test_every_span_of_a_saga_is_in_its_one_trace(
    demo: DemoResult, spans: InMemorySpanExporter
) -> None:
    assert demo.all_as_expected
    for saga in demo.sagas:
        found = of_saga(spans, saga.state.saga_id)
        assert found, saga.state.saga_id
        assert {hexed(s.context.trace_id, 32) for s in found} == {saga.state.trace_id}


def test_the_saga_start_has_the_id_every_parentless_span_hangs_under(
    demo: DemoResult, spans: InMemorySpanExporter
) -> None:
    for saga in demo.sagas:
        saga_id = saga.state.saga_id
        [start] = [s for s in of_saga(spans, saga_id) if s.name.startswith("saga start")]
        assert start.context.span_id == tracing.root_span_id(saga_id)
        assert (start.attributes or {})["saga.type"] == saga.state.saga_type


def test_every_consumer_span_is_a_child_of_its_producer_span(
    demo: DemoResult, spans: InMemorySpanExporter
) -> None:
    finished = spans.get_finished_spans()
    producers = {s.context.span_id: s for s in finished if s.kind == SpanKind.PRODUCER}
    consumers = [s for s in finished if s.kind == SpanKind.CONSUMER]
    assert consumers
    for consumer in consumers:
        assert consumer.parent is not None
        producer = producers[consumer.parent.span_id]
        attributes = consumer.attributes or {}
        assert (
            attributes["messaging.message.id"]
            == (producer.attributes or {})["messaging.message.id"]
        )
        assert attributes["messaging.system"] == "rabbitmq"
        assert producer.name == consumer.name.replace("process", "publish")


def test_compensations_are_published_in_reverse_order_of_the_steps(
    demo: DemoResult, spans: InMemorySpanExporter
) -> None:
    compensated = [s for s in demo.sagas if s.state.status == "compensated"]
    assert compensated
    for saga in compensated:
        published = sorted(
            (
                s
                for s in of_saga(spans, saga.state.saga_id)
                if s.kind == SpanKind.PRODUCER and "saga.action" in (s.attributes or {})
            ),
            key=lambda s: s.start_time or 0,
        )
        done = [
            (s.attributes or {})["saga.step"]
            for s in published
            if (s.attributes or {})["saga.action"] == "execute"
        ]
        undone = [
            (s.attributes or {})["saga.step"]
            for s in published
            if (s.attributes or {})["saga.action"] == "compensate"
        ]
        succeeded = [st.name for st in saga.state.steps if st.status == "compensated"]
        assert undone == [step for step in reversed(done) if step in succeeded]


def test_a_participant_s_handler_has_a_span_under_its_consumer_span(
    demo: DemoResult, spans: InMemorySpanExporter
) -> None:
    finished = spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished}
    handlers = [s for s in finished if s.name.startswith("handle ")]
    assert handlers
    for handler in handlers:
        assert handler.parent is not None
        assert by_id[handler.parent.span_id].kind == SpanKind.CONSUMER


def test_a_log_line_inside_a_span_carries_its_trace_and_span_ids(
    spans: InMemorySpanExporter,
) -> None:
    with tracing.handling("a span") as span:
        line = tracing.log_fields(None, "warning", {"event": "inside"})
    assert span is not None
    assert line["trace_id"] == hexed(span.get_span_context().trace_id, 32)
    assert line["span_id"] == hexed(span.get_span_context().span_id, 16)
    # Every process's logging runs it.
    before = structlog.get_config()
    try:
        configure_logging(Settings(log_format="json"), stream=StringIO())
        assert tracing.log_fields in structlog.get_config()["processors"]
    finally:
        structlog.configure(**before)


def test_off_nothing_is_recorded_and_no_header_is_added() -> None:
    assert not tracing.enabled()
    with tracing.handling("nothing") as span:
        assert span is None
        assert tracing.message_headers() is None


async def test_an_operator_s_action_hangs_under_the_saga_s_start(
    spans: InMemorySpanExporter,
) -> None:
    redis = FakeAsyncRedis(decode_responses=True)
    transports: list[InMemoryTransport] = []
    wiring = Wiring(Settings(namespace="traced"), redis=redis, transport=lambda _: transports[0])
    transports.append(InMemoryTransport(wiring.topology))
    dispatcher = wiring.dispatcher(transports[0])
    try:
        definition = await wiring.registry.latest("order")
        state = await wiring.starter(dispatcher).start(
            definition, customer="ann@example.com", saga_input=order_input().model_dump()
        )
        # Nobody answers the reservation: the saga is cancelled (a replay goes the same way).
        applied = await wiring.orchestrator(dispatcher).apply(
            state.saga_id, CancelSaga(by="ann@example.com"), applied_id="cancel:1"
        )
        assert applied.outcome == "appended"
    finally:
        await wiring.aclose()
        await redis.aclose()
    finished = spans.get_finished_spans()
    [cancel] = [s for s in finished if s.name == "cancel saga"]
    assert cancel.parent is not None
    assert cancel.parent.span_id == tracing.root_span_id(state.saga_id)
    assert hexed(cancel.context.trace_id, 32) == state.trace_id
    undo = [s for s in finished if (s.attributes or {}).get("saga.action") == "compensate"]
    assert undo and all(
        s.parent is not None and s.parent.span_id == cancel.context.span_id for s in undo
    )
