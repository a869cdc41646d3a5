"""What operators see: Prometheus metrics on every process, W3C trace context from the
HTTP request through every command and reply, and structured log lines about sagas."""

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.shop import Shop, open_shop
from tests.e2e.system import System, log_lines, running_system
from tests.promql import alert_rules, dashboard_expressions, selectors


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with running_system(tmp_path_factory.mktemp("observed"), metrics=True) as running:
        yield running


def scrape(url: str) -> dict[str, float]:
    """Prometheus text format as {'name{labels}': value}."""
    samples = {}
    for line in httpx.get(url, timeout=5).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def worker_metrics(system: System, name: str) -> dict[str, float]:
    return scrape(f"http://127.0.0.1:{system.metrics_ports[name]}/metrics")


def sample(samples: dict[str, float], name: str, **labels: str) -> float:
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    found = [
        v for k, v in samples.items() if k.startswith(name + "{") and all(w in k for w in wanted)
    ]
    return sum(found)


@pytest.fixture(scope="module")
def two_sagas(observed: System) -> tuple[Shop, dict[str, Any], dict[str, Any]]:
    shop = open_shop(observed)
    completed = shop.order([("apple", 1)])
    compensated = shop.order([("pear", 5)])  # only 2 pears: insufficient stock
    return shop, completed, compensated


def test_every_process_counts_what_it_did(
    observed: System, two_sagas: tuple[Shop, dict[str, Any], dict[str, Any]]
) -> None:
    api = scrape(f"{observed.api}/metrics")
    assert sample(api, "saga_started_total", saga_type="order") == 2
    orchestrator = worker_metrics(observed, "orchestrator")
    assert sample(orchestrator, "saga_ended_total", status="completed") == 1
    assert sample(orchestrator, "saga_ended_total", status="compensated") == 1
    assert (
        sample(orchestrator, "saga_step_duration_seconds_count", step="reserve_stock", outcome="ok")
        == 1
    )
    assert (
        sample(
            orchestrator, "saga_step_duration_seconds_count", step="reserve_stock", outcome="failed"
        )
        == 1
    )
    stock = worker_metrics(observed, "stock")
    assert (
        sample(stock, "saga_commands_handled_total", command="ReserveStock", reply="StockReserved")
        == 1
    )
    assert sample(stock, "saga_commands_handled_total", reply="CommandFailed") == 1
    assert sample(stock, "saga_commands_handled_total", command="ConfirmStock") == 1


def test_the_orchestrator_samples_what_waits(
    observed: System, two_sagas: tuple[Shop, dict[str, Any], dict[str, Any]]
) -> None:
    ns = observed.namespace
    queues = [f"{ns}.{queue}" for queue in ("orchestrator", "stock", "payment", "order")]
    deadline = time.monotonic() + 15
    while True:
        gauges = worker_metrics(observed, "orchestrator")
        names = {k.split("{")[0] for k in gauges}
        # A scrape may fall within a sampling, between its gauges: wait for one that
        # shows the sagas ended and every queue read by its consumer.
        if (
            {
                "saga_in_flight",
                "saga_outbox_pending",
                "saga_outbox_oldest_seconds",
                "saga_timers_waiting",
                "saga_timers_due",
                "saga_dead_letters",
                "saga_queue_messages",
                "saga_queue_consumers",
            }
            <= names
            and gauges.get("saga_in_flight") == 0
            and all(sample(gauges, "saga_queue_consumers", queue=q) == 1 for q in queues)
        ):
            break
        assert time.monotonic() < deadline, gauges
        time.sleep(0.5)
    assert gauges["saga_dead_letters"] == 0
    assert gauges["saga_outbox_oldest_seconds"] == 0
    assert sample(gauges, "saga_queue_messages", queue=f"{ns}.dead-letters") == 0
    # Both sagas ended: each is in the histogram of saga durations by how it ended.
    assert sample(gauges, "saga_duration_seconds_count", status="completed") == 1
    assert sample(gauges, "saga_duration_seconds_count", status="compensated") == 1


def test_a_trace_runs_from_the_request_through_every_command_and_reply(observed: System) -> None:
    shop = open_shop(observed)
    trace_id = uuid.uuid4().hex
    response = httpx.post(
        f"{observed.api}/orders/create_order",
        json=shop.body([("apple", 1)]),
        headers={
            "Authorization": f"Bearer {shop.token}",
            "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01",
        },
        timeout=10,
    )
    assert response.status_code == 202
    assert response.headers["traceparent"].split("-")[1] == trace_id
    saga_id = response.json()["saga_id"]
    observed.wait_terminal(shop.token, saga_id)
    events = observed.cli_json("show", saga_id)["events"]
    assert events[0]["data"]["trace_id"] == trace_id
    for process in ("orchestrator", "stock", "payment", "order"):
        lines = log_lines(observed.logs / f"{process}.log", saga_id)
        assert lines, f"{process} logged nothing about the saga"
        assert all(line.get("trace_id") == trace_id for line in lines), (process, lines)


def test_a_request_without_trace_context_starts_a_trace(observed: System) -> None:
    shop = open_shop(observed)
    response = observed.place_order(shop.token, shop.body([("apple", 1)]))
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", response.headers["traceparent"])


def test_log_lines_about_messages_say_which_saga_message_step_and_outcome(
    observed: System, two_sagas: tuple[Shop, dict[str, Any], dict[str, Any]]
) -> None:
    _, completed, _ = two_sagas
    handled = [
        line
        for line in log_lines(observed.logs / "stock.log", completed["saga_id"])
        if line["event"] == "command handled"
    ]
    assert {(line["step"], line["outcome"]) for line in handled} == {
        ("reserve_stock", "StockReserved"),
        ("confirm_stock", "StockConfirmed"),
    }
    assert all(line["message_id"] for line in handled)
    applied = [
        line
        for line in log_lines(observed.logs / "orchestrator.log", completed["saga_id"])
        if line["event"] == "saga event"
    ]
    assert {line["saga_event"] for line in applied} >= {"StepSucceeded", "SagaCompleted"}
    assert all(line["message_id"] for line in applied)


def test_the_dashboard_and_alerts_read_only_series_the_processes_export(
    observed: System, two_sagas: tuple[Shop, dict[str, Any], dict[str, Any]]
) -> None:
    urls = [f"{observed.api}/metrics"] + [
        f"http://127.0.0.1:{port}/metrics" for port in observed.metrics_ports.values()
    ]
    kinds: dict[str, str] = {}
    for url in urls:
        for line in httpx.get(url, timeout=5).text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split()
                kinds[name] = kind
    series = {"up"}  # Prometheus's own, per target
    for name, kind in kinds.items():
        series |= (
            {f"{name}{s}" for s in ("_bucket", "_count", "_sum")} if kind == "histogram" else {name}
        )
    expressions = dashboard_expressions() + [rule["expr"] for rule in alert_rules()]
    read = {name for expr in expressions for name, _ in selectors(expr)}
    assert read <= series, read - series
