"""Bad configuration gets one line per bad variable, from every entry point, before it
connects; a server that cannot be reached gets one line naming it and its URL."""

import os
import subprocess
import sys

import pytest

from tests.e2e.system import free_port
from tests.servers import fresh_namespace

# Well-formed URLs of servers that are not there: a process that got past checking its
# settings would fail to connect (or serve without them), never touch the shared ones.
NOWHERE = {
    "SAGA_REDIS_URL": "redis://127.0.0.1:1/0",
    "SAGA_RABBITMQ_URL": "amqp://guest:hunter2@127.0.0.1:1/",
    "SAGA_AUTH_URL": "http://127.0.0.1:1",
}


def saga(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """`saga <args>` with only these settings (and a fresh namespace) in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGA_")}
    env |= {"SAGA_NAMESPACE": fresh_namespace(), "SAGA_LOG_LEVEL": "warning", **NOWHERE}
    return subprocess.run(
        [sys.executable, "-m", "saga", *args],
        env=env | settings,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The only line on stderr; nothing else was printed there, least of all a traceback."""
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("saga: error: "), result.stderr
    return lines[0]


def port() -> str:
    return str(free_port())


# Every entry point, each with a different bad variable and what its line must say.
ENTRY_POINTS = [
    (["api", "--port", port()], "SAGA_AUTH_URL", "nonsense", "http:// or https://"),
    (["auth", "--port", port()], "SAGA_RETENTION", "forever", "500ms, 30s, 5m, 2h, 7d"),
    (["orchestrator"], "SAGA_RABBITMQ_URL", "nonsense", "amqp:// or amqps://"),
    (["service", "stock"], "SAGA_LOG_LEVEL", "loud", "'debug', 'info', 'warning' or 'error'"),
    (["up", "--api-port", port(), "--auth-port", port()], "SAGA_RATE_LIMIT", "fast", "20/second"),
    (["list"], "SAGA_REDIS_URL", "nonsense", "redis://, rediss:// (TLS), unix://"),
    (["show", "some-saga"], "SAGA_NAMESPACE", "Not Valid!", "a-z, 0-9"),
    (["stock", "show", "apple"], "SAGA_PREFETCH", "0", "at least 1"),
    (["payment", "show", "a@example.com"], "SAGA_STEP_TIMEOUT", "soon", "500ms, 30s, 5m"),
    (
        ["auth", "add-user", "a@example.com", "--password", "long-enough"],
        "SAGA_LOG_FORMAT",
        "xml",
        "'json'",
    ),
    (["dlq", "list"], "SAGA_EVENT_LOOP", "trio", "'auto', 'uvloop' or 'asyncio'"),
    (
        ["replay", "--status", "failed"],
        "SAGA_TIMER_LEASE",
        "-5",
        "cannot be negative; a duration is written",
    ),
    (["definitions", "list"], "SAGA_MAX_BODY_BYTES", "10", "at least 1024"),
    (["bench", "--sagas", "1"], "SAGA_TOKEN_TTL", "30s", "at least 60"),
    (["demo", "--orders", "1"], "SAGA_RETENTION", "7 days", "500ms, 30s, 5m, 2h, 7d"),
]


@pytest.mark.parametrize(
    ("args", "variable", "value", "accepted"),
    ENTRY_POINTS,
    ids=[e[0][0] + ":" + e[1] for e in ENTRY_POINTS],
)
def test_a_bad_setting_is_one_line_naming_the_variable(
    args: list[str], variable: str, value: str, accepted: str
) -> None:
    result = saga(*args, **{variable: value})
    line = one_line(result)
    assert result.returncode == 2, result.stderr
    assert f"{variable}={value!r}" in line
    assert accepted in line


def test_several_bad_settings_are_one_line_each() -> None:
    result = saga(
        "orchestrator", SAGA_REDIS_URL="nonsense", SAGA_RETENTION="forever", SAGA_PREFETCH="x"
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3, result.stderr
    assert all(line.startswith("saga: error: ") for line in lines)
    for variable in ("SAGA_REDIS_URL", "SAGA_RETENTION", "SAGA_PREFETCH"):
        assert sum(variable in line for line in lines) == 1, result.stderr


def test_a_bad_url_does_not_show_its_password() -> None:
    line = one_line(saga("list", SAGA_RABBITMQ_URL="ampq://guest:hunter2@127.0.0.1/"))
    assert "SAGA_RABBITMQ_URL='ampq://guest:***@127.0.0.1/'" in line
    assert "hunter2" not in line


def test_the_demo_runs_whatever_the_servers_urls_say() -> None:
    result = saga(
        "demo", "--orders", "1", "--json", SAGA_REDIS_URL="nonsense", SAGA_RABBITMQ_URL="x"
    )
    assert result.returncode == 0, result.stderr


UNREACHABLE = [
    (["orchestrator"], "cannot reach RabbitMQ (amqp://guest:***@127.0.0.1:1/)"),
    (["service", "payment"], "cannot reach RabbitMQ (amqp://guest:***@127.0.0.1:1/)"),
    (["auth", "--port", port()], "cannot reach Redis (redis://127.0.0.1:1/0)"),
    (["list"], "cannot reach Redis (redis://127.0.0.1:1/0)"),
    (["dlq", "list"], "cannot reach RabbitMQ (amqp://guest:***@127.0.0.1:1/)"),
    (["bench", "--sagas", "1"], "cannot reach"),
]


@pytest.mark.parametrize(("args", "message"), UNREACHABLE, ids=[u[0][0] for u in UNREACHABLE])
def test_an_unreachable_server_is_one_line_naming_it_and_its_url(
    args: list[str], message: str
) -> None:
    result = saga(*args)
    line = one_line(result)
    assert result.returncode == 1, result.stderr
    assert message in line
    assert "hunter2" not in result.stderr
