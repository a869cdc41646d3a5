"""Settings: every accepted form is read, every bad one is named with what it takes."""

import os
from typing import Any

import pytest

from saga.core.durations import DURATION_FORMS
from saga.settings import Settings, SettingsError, load_settings


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment with no SAGA_ variable but those a test sets."""
    for name in [n for n in os.environ if n.upper().startswith("SAGA_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def loaded(env: pytest.MonkeyPatch, **variables: str) -> Settings:
    for name, value in variables.items():
        env.setenv(name, value)
    return load_settings()


def problems(env: pytest.MonkeyPatch, **variables: str) -> list[str]:
    with pytest.raises(SettingsError) as refused:
        loaded(env, **variables)
    return refused.value.problems


ACCEPTED: list[tuple[str, str, str, Any]] = [
    ("SAGA_REDIS_URL", "rediss://:pw@redis.example:6380/2", "redis_url", None),
    ("SAGA_REDIS_URL", "unix:///run/redis/redis.sock", "redis_url", None),
    ("SAGA_REDIS_URL", "redis+cluster://10.0.0.1:6379,10.0.0.2:6380", "redis_url", None),
    ("SAGA_REDIS_URL", "rediss+cluster://:pw@[::1]:7000", "redis_url", None),
    ("SAGA_REDIS_BUCKETS", "64", "redis_buckets", 64),
    ("SAGA_RABBITMQ_URL", "amqps://u:p@mq.example:5671/vhost", "rabbitmq_url", None),
    (
        "SAGA_RABBITMQ_URL",
        "amqp://mq-1/, amqp://mq-2/",
        "rabbitmq_url",
        "amqp://mq-1/,amqp://mq-2/",
    ),
    ("SAGA_RABBITMQ_QUORUM_SIZE", "5", "rabbitmq_quorum_size", 5),
    ("SAGA_AUTH_URL", "https://auth.example", "auth_url", None),
    ("SAGA_RETENTION", "90s", "retention", 90),
    ("SAGA_RETENTION", "15m", "retention", 900),
    ("SAGA_RETENTION", "12h", "retention", 43200),
    ("SAGA_RETENTION", "7d", "retention", 604800),
    ("SAGA_RETENTION", "3600", "retention", 3600),
    ("SAGA_STEP_TIMEOUT", "1.5s", "step_timeout", 1.5),
    ("SAGA_TIMER_INTERVAL", "500ms", "timer_interval", 0.5),
    ("SAGA_TOKEN_TTL", "2h", "token_ttl", 7200),
    ("SAGA_LOG_LEVEL", "WARNING", "log_level", "warning"),
    ("SAGA_LOG_FORMAT", "Json", "log_format", "json"),
    ("SAGA_EVENT_LOOP", "asyncio", "event_loop", "asyncio"),
    ("SAGA_RATE_LIMIT", "600/minute", "rate_limit", None),
    ("SAGA_NAMESPACE", "shop_2-eu", "namespace", None),
]


@pytest.mark.parametrize(("variable", "value", "field", "expected"), ACCEPTED)
def test_an_accepted_form_is_read(
    env: pytest.MonkeyPatch, variable: str, value: str, field: str, expected: Any
) -> None:
    settings = loaded(env, **{variable: value})
    assert getattr(settings, field) == (value if expected is None else expected)


REFUSED = [
    ("SAGA_REDIS_URL", "nonsense", "redis://, rediss:// (TLS), unix://"),
    ("SAGA_REDIS_URL", "redis+cluster://10.0.0.1:6379,10.0.0.2", "'10.0.0.2' is not HOST:PORT"),
    ("SAGA_REDIS_URL", "redis+cluster://", "'' is not HOST:PORT"),
    ("SAGA_REDIS_BUCKETS", "0", "must be at least 1"),
    ("SAGA_REDIS_URL", "http://127.0.0.1:6379", "redis://, rediss://"),
    ("SAGA_REDIS_URL", "redis://127.0.0.1:port/0", "Port could not be cast"),
    ("SAGA_REDIS_URL", "unix://", "names no socket path"),
    ("SAGA_REDIS_URL", "redis://h/0?socket_timeout=soon", "Invalid value for 'socket_timeout'"),
    ("SAGA_RABBITMQ_URL", "nonsense", "amqp:// or amqps://"),
    ("SAGA_RABBITMQ_URL", "amqp://", "names no host"),
    ("SAGA_RABBITMQ_URL", "amqp://h:99999/", "Port out of range"),
    ("SAGA_RABBITMQ_URL", "amqp://mq-1/,http://mq-2/", "URL 2 of 2, 'http://mq-2/': a RabbitMQ"),
    ("SAGA_RABBITMQ_URL", " , ", "names no RabbitMQ node; give one AMQP URL per node"),
    ("SAGA_RABBITMQ_QUORUM_SIZE", "0", "must be at least 1"),
    ("SAGA_AUTH_URL", "127.0.0.1:7002", "http:// or https://"),
    ("SAGA_RETENTION", "forever", DURATION_FORMS),
    ("SAGA_RETENTION", "0", "must be at least 1s; a duration is"),
    ("SAGA_RELAY_INTERVAL", "0", "must be more than 0s"),
    ("SAGA_AUTH_TIMEOUT", "1m", "must be at most 30s"),
    ("SAGA_TOKEN_TTL", "-1", f"a duration cannot be negative; {DURATION_FORMS}"),
    ("SAGA_LOG_LEVEL", "loud", "'debug', 'info', 'warning' or 'error'"),
    ("SAGA_LOG_FORMAT", "xml", "'auto', 'json' or 'console'"),
    ("SAGA_EVENT_LOOP", "trio", "'auto', 'uvloop' or 'asyncio'"),
    ("SAGA_RATE_LIMIT", "fast", "N/second, N/minute or N/hour"),
    ("SAGA_RATE_LIMIT", "0/second", "N at least 1"),
    ("SAGA_NAMESPACE", "Shop!", "1 to 48 of a-z, 0-9, '_' and '-'"),
    ("SAGA_PREFETCH", "many", "should be a valid integer"),
    ("SAGA_MAX_BODY_BYTES", "100000000", "must be at most 67108864"),
]


@pytest.mark.parametrize(("variable", "value", "accepted"), REFUSED)
def test_a_bad_value_is_named_with_what_was_given_and_what_is_taken(
    env: pytest.MonkeyPatch, variable: str, value: str, accepted: str
) -> None:
    (line,) = problems(env, **{variable: value})
    assert line.startswith(f"{variable}={value!r}: ")
    assert accepted in line


def test_each_bad_variable_is_one_line(env: pytest.MonkeyPatch) -> None:
    lines = problems(
        env, SAGA_REDIS_URL="x", SAGA_RETENTION="forever", SAGA_LOG_LEVEL="loud", SAGA_PREFETCH="0"
    )
    assert [line.partition("=")[0] for line in lines] == [
        "SAGA_REDIS_URL",
        "SAGA_PREFETCH",
        "SAGA_RETENTION",
        "SAGA_LOG_LEVEL",
    ]


def test_a_variable_is_named_in_any_case(env: pytest.MonkeyPatch) -> None:
    (line,) = problems(env, saga_retention="forever")
    assert line.startswith("SAGA_RETENTION='forever': ")


def test_a_password_is_not_shown(env: pytest.MonkeyPatch) -> None:
    (line,) = problems(env, SAGA_RABBITMQ_URL="ampq://guest:hunter2@127.0.0.1/")
    assert "hunter2" not in line
    assert "'ampq://guest:***@127.0.0.1/'" in line


def test_no_password_of_a_list_of_nodes_is_shown(env: pytest.MonkeyPatch) -> None:
    (line,) = problems(env, SAGA_RABBITMQ_URL="amqp://u:one@mq-1/,amqp://u:two@mq-2:0x/")
    assert "one" not in line and "two" not in line
    assert line.startswith("SAGA_RABBITMQ_URL='amqp://u:***@mq-1/,amqp://u:***@mq-2:0x/': ")


def test_without_servers_their_urls_are_not_read(env: pytest.MonkeyPatch) -> None:
    env.setenv("SAGA_REDIS_URL", "nonsense")
    env.setenv("SAGA_RABBITMQ_URL", "nonsense")
    env.setenv("SAGA_AUTH_URL", "nonsense")
    settings = load_settings(servers=False)
    assert settings.redis_url == Settings.model_fields["redis_url"].default
    env.setenv("SAGA_RETENTION", "forever")
    with pytest.raises(SettingsError, match="SAGA_RETENTION"):
        load_settings(servers=False)
