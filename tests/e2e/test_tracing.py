"""One trace per saga across every process: the real processes export OTLP/HTTP to a
receiver this test runs on loopback, which decodes the protobuf like a collector."""

import gzip
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from saga.tracing import root_span_id
from tests.e2e.shop import open_shop
from tests.e2e.system import System, log_lines, running_system
from tests.servers import free_port

PRODUCER, CONSUMER = ProtoSpan.SPAN_KIND_PRODUCER, ProtoSpan.SPAN_KIND_CONSUMER


@dataclass(frozen=True)
class Received:
    """One exported span, as the receiver decoded it."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent: str
    start: int
    attributes: dict[str, Any]


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP (protobuf) trace receiver keeping every span it is sent."""

    spans: list[Received]

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.spans = []
        self.lock = threading.Lock()

    def take(self, request: ExportTraceServiceRequest) -> None:
        found = []
        for resource in request.resource_spans:
            service = next(
                (
                    a.value.string_value
                    for a in resource.resource.attributes
                    if a.key == "service.name"
                ),
                "",
            )
            for scope in resource.scope_spans:
                for span in scope.spans:
                    found.append(
                        Received(
                            service=service,
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent=span.parent_span_id.hex(),
                            start=span.start_time_unix_nano,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        with self.lock:
            self.spans.extend(found)


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.take(request)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver(free_port())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def traced(receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    settings = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.server_address[1]}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: spans reach the receiver at once
        # Short, for the retried saga, whose payment service is resumed from SIGSTOP once
        # the `saga show` poll sees the second try (a poll that takes seconds on a busy
        # machine, by when a third try may be out): six tries leave it time to answer.
        "SAGA_STEP_TIMEOUT": "2",
        "SAGA_MAX_ATTEMPTS": "6",
        "SAGA_RETRY_BACKOFF": "0.1",
    }
    with running_system(tmp_path_factory.mktemp("traced"), settings=settings) as running:
        yield running


@pytest.fixture(scope="module")
def sagas(traced: System) -> dict[str, str]:
    """Three orders: one completes, one is compensated, one is retried after a timeout."""
    shop = open_shop(traced)
    completed = shop.order([("apple", 1)])
    # charged, then the order is refused: the charge refunded, the stock released
    compensated = shop.order([("apple", 2)], vendor_email="nobody@example.com")
    traced.pause("payment")
    try:
        retried = shop.place([("apple", 1)])
        # Paused until the charge is sent again: resumed between its timeout and its
        # retry, the service's late answer to the first try would rightly end the step,
        # and no second command would go out.
        deadline = time.monotonic() + 15
        while not _charged_again(traced.cli_json("show", retried)["events"]):
            assert time.monotonic() < deadline, "the charge was never sent again"
            time.sleep(0.2)
    finally:
        traced.resume("payment")
    finished = traced.wait_terminal(shop.token, retried)
    assert completed["status"] == "completed" and compensated["status"] == "compensated"
    assert finished["status"] == "completed", finished
    return {
        "completed": completed["saga_id"],
        "compensated": compensated["saga_id"],
        "retried": retried,
    }


def _charged_again(events: list[dict[str, Any]]) -> bool:
    return any(
        e["type"] == "StepRequested"
        and e["data"]["step"] == "take_payment"
        and e["data"]["attempt"] >= 2
        for e in events
    )


def spans_of(receiver: Receiver, traced: System, saga_id: str) -> list[Received]:
    """The saga's spans in its trace, once every command of its log and every message
    of the trace have both their spans (the processes export every 100 ms, each on its
    own: on a busy machine one command's spans may come well after another's)."""
    events = traced.cli_json("show", saga_id)["events"]
    trace_id = events[0]["data"]["trace_id"]
    commands = {e["data"]["command_id"] for e in events if e["type"] == "StepRequested"}
    deadline = time.monotonic() + 20
    while True:
        with receiver.lock:
            found = [s for s in receiver.spans if s.trace_id == trace_id]
        producers = {s.attributes.get("messaging.message.id") for s in found if s.kind == PRODUCER}
        consumers = {s.attributes.get("messaging.message.id") for s in found if s.kind == CONSUMER}
        started = any(s.name.startswith("saga start") for s in found)
        if started and commands <= producers and producers == consumers:
            return found
        assert time.monotonic() < deadline, (commands - producers, producers ^ consumers, found)
        time.sleep(0.2)


@pytest.mark.parametrize("which", ["completed", "compensated", "retried"])
def test_a_saga_is_one_trace_through_every_process(
    receiver: Receiver, traced: System, sagas: dict[str, str], which: str
) -> None:
    spans = spans_of(receiver, traced, sagas[which])
    services = {s.service for s in spans}
    assert {"saga-api", "saga-orchestrator", "saga-stock", "saga-payment"} <= services
    by_id = {s.span_id: s for s in spans}
    # The HTTP request that started it is the root; the saga's start is under it.
    [start] = [s for s in spans if s.name.startswith("saga start")]
    assert by_id[start.parent].service == "saga-api"
    for consumer in (s for s in spans if s.kind == CONSUMER):
        producer = by_id[consumer.parent]
        assert producer.kind == PRODUCER
        assert (
            producer.attributes["messaging.message.id"]
            == consumer.attributes["messaging.message.id"]
        )
        assert consumer.attributes["messaging.system"] == "rabbitmq"
        assert consumer.attributes["messaging.operation.type"] == "process"


def test_the_compensations_appear_in_reverse_order(
    receiver: Receiver, traced: System, sagas: dict[str, str]
) -> None:
    spans = spans_of(receiver, traced, sagas["compensated"])
    sent = sorted(
        (s for s in spans if s.kind == PRODUCER and "saga.action" in s.attributes),
        key=lambda s: s.start,
    )
    undone = [
        s.attributes["saga.step"] for s in sent if s.attributes["saga.action"] == "compensate"
    ]
    done = [s.attributes["saga.step"] for s in sent if s.attributes["saga.action"] == "execute"]
    assert undone and undone == [step for step in reversed(done) if step in undone]


def test_a_retry_after_a_timeout_is_a_timer_span_sending_the_command_again(
    receiver: Receiver, traced: System, sagas: dict[str, str]
) -> None:
    spans = spans_of(receiver, traced, sagas["retried"])
    timers = [s for s in spans if s.name.startswith("timer ")]
    assert {"timer timeout", "timer retry"} <= {s.name for s in timers}
    charges = [
        s for s in spans if s.kind == PRODUCER and s.attributes.get("saga.step") == "take_payment"
    ]
    assert len(charges) >= 2
    # The retried command goes out under the retry timer's span.
    by_id = {s.span_id: s for s in spans}
    assert any(by_id.get(c.parent, c).name == "timer retry" for c in charges)


def test_a_log_line_in_a_span_carries_trace_and_span_ids(
    traced: System, sagas: dict[str, str]
) -> None:
    lines = log_lines(traced.logs / "stock.log", sagas["completed"])
    handled = [line for line in lines if line["event"] == "command handled"]
    assert handled and all(len(line.get("span_id", "")) == 16 for line in handled)


def test_a_cancel_is_a_span_of_the_saga_s_trace_linked_to_the_request(
    receiver: Receiver, traced: System
) -> None:
    shop = open_shop(traced)
    traced.pause("payment")  # the saga waits at the charge
    try:
        saga_id = shop.place([("apple", 1)])
        response = httpx.post(
            f"{traced.api}/sagas/{saga_id}/cancel",
            headers={"Authorization": f"Bearer {shop.token}"},
            timeout=10,
        )
        assert response.status_code == 202, response.text
    finally:
        traced.resume("payment")
    assert traced.wait_terminal(shop.token, saga_id)["status"] == "compensated"
    spans = spans_of(receiver, traced, saga_id)
    [cancel] = [s for s in spans if s.name == "cancel saga"]
    assert cancel.service == "saga-api"
    assert cancel.parent == format(root_span_id(saga_id), "016x")
    # The cancel sends the first compensation, under its span.
    undoing = [
        s for s in spans if s.kind == PRODUCER and s.attributes.get("saga.action") == "compensate"
    ]
    assert any(s.parent == cancel.span_id for s in undoing), (cancel, undoing)
