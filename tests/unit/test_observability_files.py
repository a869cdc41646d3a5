"""The shipped dashboard, alert rules and Prometheus configuration read what the
processes export, pass promtool, and page when they should (docs/operations.md)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import typer
import yaml
from prometheus_client.metrics import MetricWrapperBase

import saga.metrics
from saga.cli.main import app
from tests.promql import ALERTS, PROMETHEUS, ROOT, alert_rules, dashboard_expressions, selectors

# Added by Prometheus to every series it scrapes.
TARGET_LABELS = {"job", "instance"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported() -> dict[str, set[str]]:
    """Every series name the engine's metrics export, with its label names."""
    metrics = [m for m in vars(saga.metrics).values() if isinstance(m, MetricWrapperBase)]
    metrics += list(saga.metrics._gauges())
    series: dict[str, set[str]] = {"up": set()}
    for metric in metrics:
        labels = set(metric._labelnames)
        kind = metric._type
        for suffix in SUFFIXES[kind]:
            name = f"{metric._name}{suffix}"  # a counter's _name has no _total
            series[name] = labels | ({"le"} if suffix == "_bucket" else set())
    return series


EXPRESSIONS = dashboard_expressions() + [rule["expr"] for rule in alert_rules()]


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_every_query_reads_series_the_engine_exports_by_labels_they_have(expr: str) -> None:
    found = selectors(expr)
    assert found, f"no series in {expr!r}"
    known = exported()
    for name, labels in found:
        assert name in known, f"{name} is not exported (in {expr!r})"
        assert labels <= known[name] | TARGET_LABELS, (name, labels - known[name])


def test_the_dashboard_covers_what_an_operator_needs() -> None:
    read = {name for expr in dashboard_expressions() for name, _ in selectors(expr)}
    assert {
        "saga_started_total",
        "saga_ended_total",
        "saga_duration_seconds_bucket",
        "saga_step_duration_seconds_count",
        "saga_retries_total",
        "saga_queue_messages",
        "saga_queue_consumers",
        "saga_dead_letters",
        "saga_outbox_oldest_seconds",
        "saga_timers_due",
    } <= read


def test_every_alert_says_how_bad_and_which_commands_to_run() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        runbook = rule["annotations"]["runbook"]
        for words in (part.split() for part in runbook.split("saga ")[1:]):
            assert words[0] in commands, f"{rule['alert']}: `saga {words[0]}` is no command"
            group = commands[words[0]]
            if hasattr(group, "commands") and words[1:2]:
                assert words[1].strip(",;") in group.commands, f"{rule['alert']}: saga {words[:2]}"


def test_prometheus_scrapes_every_process_compose_runs_where_it_serves_metrics() -> None:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    targets = {
        t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    }
    expected = set()
    for name, service in services.items():
        command = service.get("command", [])
        if "--metrics-port" in command:
            expected.add(f"{name}:{command[command.index('--metrics-port') + 1]}")
        elif command[:1] == ["api"]:
            expected.add(f"{name}:{command[command.index('--port') + 1]}")
    assert targets == expected
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert "saga-orchestrator" in jobs  # the NoOrchestrator alert reads its `up`


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing under CI=true (.ci/run installs Debian's prometheus)")
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    return found


def run(*args: str, cwd: Path = PROMETHEUS) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_alert_rules_pass_promtool() -> None:
    assert "SUCCESS" in run(promtool(), "check", "rules", str(ALERTS))


def test_each_alert_fires_when_it_should_and_not_otherwise() -> None:
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    tested = {t["alertname"] for test in tests for t in test["alert_rule_test"] if t["exp_alerts"]}
    assert tested == {rule["alert"] for rule in alert_rules()}
    assert "SUCCESS" in run(promtool(), "test", "rules", "alerts.test.yml")


def test_the_prometheus_configuration_passes_promtool(tmp_path: Path) -> None:
    # As mounted in compose: the rules beside the configuration, at their absolute path.
    text = (PROMETHEUS / "prometheus.yml").read_text()
    (tmp_path / "prometheus.yml").write_text(text.replace("/etc/prometheus/", f"{tmp_path}/"))
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    run(promtool(), "check", "config", str(tmp_path / "prometheus.yml"), cwd=tmp_path)
