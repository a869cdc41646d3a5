"""Settings from the environment (prefix SAGA_), read once at start-up and passed down."""

import importlib.util
import os
import re
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, Any, Final, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.topology import NAMESPACE_PATTERN
from saga.core.durations import DURATION_FORMS, parse_seconds
from saga.eventloop import EventLoop

DEFAULT_RETENTION: Final = 7 * 86400
# How long a command may wait in an outbox before the relay publishes it again, and how
# often the relay looks.
DEFAULT_RELAY_GRACE: Final = 5.0
DEFAULT_RELAY_INTERVAL: Final = 1.0
MAX_TOKEN_TTL: Final = 7 * 24 * 3600


def _lower(value: object) -> object:
    """A choice is taken in any case: INFO is info."""
    return value.strip().lower() if isinstance(value, str) else value


Duration = Annotated[float, BeforeValidator(parse_seconds)]
LogLevel = Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)]
LogFormat = Annotated[Literal["auto", "json", "console"], BeforeValidator(_lower)]
LoopChoice = Annotated[EventLoop, BeforeValidator(_lower)]

# The schemes each server's URL may have, and an example of the whole form.
_URL_FORMS: Final = {
    "rabbitmq_url": (
        "a RabbitMQ URL starts with amqp:// or amqps:// (TLS)",
        ("amqp", "amqps"),
        "amqp://guest:guest@127.0.0.1:5672/",
    ),
    "redis_url": (
        "a Redis URL starts with redis://, rediss:// (TLS), unix:// (a socket path) or"
        " redis+cluster:// (a Redis Cluster, by one or more of its nodes: HOST:PORT,HOST:PORT)",
        ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster"),
        "redis://127.0.0.1:6379/0",
    ),
    "auth_url": (
        "the auth service's URL starts with http:// or https://",
        ("http", "https"),
        "http://127.0.0.1:7002",
    ),
}


class Settings(BaseSettings):
    """Every knob of every process. Nothing else reads the environment."""

    model_config = SettingsConfigDict(env_prefix="SAGA_", extra="ignore", frozen=True)

    # One AMQP URL per RabbitMQ node, comma-separated: a process connects to one of them
    # and, when it goes away, to another.
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # How many nodes hold each quorum queue the engine makes (its members); unset: every
    # node the URL list names, up to 3 (one node: RabbitMQ's own default). A queue that
    # exists already keeps the members it was made with.
    rabbitmq_quorum_size: int | None = Field(default=None, ge=1, le=99)
    redis_url: str = "redis://127.0.0.1:6379/0"
    auth_url: str = "http://127.0.0.1:7002"
    namespace: str = "saga"
    # The extensions to load, by name, comma-separated (empty: none); unset: every one
    # installed (the entry-point group `saga.extensions`).
    extensions: str | None = None

    auth_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key for tokens; when unset the auth service keeps one in Redis",
    )
    token_ttl: Duration = Field(default=3600, ge=60, le=MAX_TOKEN_TTL)
    auth_timeout: Duration = Field(default=2.0, gt=0, le=30)
    # How long the API may keep a verified token before asking again: a revoked token
    # is refused by every front door within this bound.
    auth_cache_ttl: Duration = Field(default=5.0, ge=0, le=60)

    # Sign-in throttling (the auth service): after this many failed sign-ins in a row
    # for one account, or from one client address, each further try must wait, the
    # first wait `auth_delay`, doubling with each failure up to `auth_max_delay`.
    auth_account_failures: int = Field(default=5, ge=1, le=1000)
    auth_address_failures: int = Field(default=20, ge=1, le=100_000)
    auth_delay: Duration = Field(default=1.0, gt=0, le=3600)
    auth_max_delay: Duration = Field(default=900.0, gt=0, le=86400)
    # A count of failures is forgotten this long after its last failure.
    auth_failure_window: Duration = Field(default=3600.0, ge=1, le=30 * 86400)
    # Passwords hashed at once (each holds a core for ~50 ms); a sign-in past them is
    # answered 503 at once.
    auth_hash_slots: int = Field(default=2, ge=1, le=64)
    # Proxies whose X-Forwarded-For names the client: addresses or networks,
    # comma-separated (empty: the socket's peer is the client).
    auth_trusted_proxies: str | None = None
    rate_limit: str = Field(default="20/second", description="per customer: 20/second, 600/minute")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)

    prefetch: int = Field(default=32, ge=1, le=1000)
    redis_max_connections: int = Field(default=64, ge=1, le=10_000)
    # Replicas that must have a saga's append before its commands are published and its
    # input acknowledged (WAIT); 0: the primary's word is enough.
    redis_wait_replicas: int = Field(default=0, ge=0, le=16)
    redis_wait_timeout: Duration = Field(default=1.0, gt=0, le=60)
    # On a Redis Cluster, how many buckets a namespace's sagas are spread over (each a
    # hash slot of its own). Fixed for the life of a namespace.
    redis_buckets: int = Field(default=16, ge=1, le=1024)
    relay_interval: Duration = Field(default=DEFAULT_RELAY_INTERVAL, gt=0, le=60)
    relay_grace: Duration = Field(default=DEFAULT_RELAY_GRACE, ge=0, le=600)

    # Override the saga definitions' own timeout and retry policy, for every step.
    step_timeout: Duration | None = Field(default=None, gt=0, le=86400)
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    retry_backoff: Duration | None = Field(default=None, ge=0, le=3600)
    compensation_max_attempts: int | None = Field(default=None, ge=1, le=1000)
    timer_interval: Duration = Field(default=0.2, gt=0, le=60)
    timer_lease: Duration = Field(default=30.0, gt=0, le=3600)

    # How long a completed or compensated saga, and the participants' memory of the
    # commands they answered, are kept; failed sagas stay until replayed.
    retention: Duration = Field(default=DEFAULT_RETENTION, ge=1, le=10 * 365 * 86400)

    # uvloop where it is installed ("auto"), or asyncio's own loop.
    event_loop: LoopChoice = "auto"

    log_level: LogLevel = "info"
    log_format: LogFormat = "auto"

    @field_validator("rabbitmq_url", "redis_url", "auth_url")
    @classmethod
    def _server_url_is_valid(cls, value: str, info: ValidationInfo) -> str:
        name = str(info.field_name)
        if name == "rabbitmq_url":
            return _node_urls(value)
        if name == "redis_url" and value.partition("://")[0].endswith("+cluster"):
            from saga.connections import cluster_nodes

            cluster_nodes(value)  # ValueError, naming what is wrong
            return value
        _check_url(value, name)
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate_is_valid(cls, value: str) -> str:
        from saga.api.limits import Rate

        try:
            Rate.parse(value)
        except ValueError:
            raise ValueError(
                "a rate is N/second, N/minute or N/hour with N at least 1, as in 20/second"
            ) from None
        return value

    @field_validator("auth_trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: str | None) -> str | None:
        proxy_networks(value)  # reading them checks them
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace_is_safe(cls, value: str) -> str:
        if not NAMESPACE_PATTERN.fullmatch(value):
            raise ValueError(
                "a namespace is 1 to 48 of a-z, 0-9, '_' and '-', starting with a letter or digit"
            )
        return value

    @field_validator("extensions")
    @classmethod
    def _extensions_are_names(cls, value: str | None) -> str | None:
        return _extension_names(value)

    @field_validator("event_loop")
    @classmethod
    def _loop_is_installed(cls, value: EventLoop) -> EventLoop:
        if value == "uvloop" and importlib.util.find_spec("uvloop") is None:
            raise ValueError("uvloop is not installed here; use auto or asyncio")
        return value


def _check_url(value: str, name: str) -> None:
    """A server's URL as its setting takes it, or ValueError saying what it takes."""
    form, schemes, example = _URL_FORMS[name]
    try:
        url = urlsplit(value)
        url.port  # noqa: B018 (reading it checks it)
    except ValueError as exc:
        raise ValueError(f"{exc}; {form}, as in {example}") from None
    if url.scheme not in schemes:
        raise ValueError(f"{form}, as in {example}")
    if url.scheme == "unix" and not url.path:
        raise ValueError("names no socket path, as in unix:///run/redis/redis.sock")
    if url.scheme != "unix" and not url.hostname:
        raise ValueError(f"names no host, as in {example}")
    if name == "redis_url":
        # The client's own reading of it (its options after `?`), now rather than when
        # the first connection is made.
        from redis.connection import parse_url

        parse_url(value)  # type: ignore[no-untyped-call]


def _node_urls(value: str) -> str:
    """SAGA_RABBITMQ_URL: one AMQP URL per node, comma-separated, each checked (a bad
    one is named by its place in the list); trimmed."""
    from saga.amqp_nodes import node_urls

    urls = node_urls(value)
    if not urls:
        raise ValueError(
            "names no RabbitMQ node; give one AMQP URL per node, comma-separated, "
            f"as in {_URL_FORMS['rabbitmq_url'][2]}"
        )
    for n, url in enumerate(urls, 1):
        try:
            _check_url(url, "rabbitmq_url")
        except ValueError as exc:
            if len(urls) == 1:
                raise
            raise ValueError(f"URL {n} of {len(urls)}, {without_password(url)!r}: {exc}") from None
    return ",".join(urls)


def proxy_networks(value: str | None) -> list[IPv4Network | IPv6Network]:
    """SAGA_AUTH_TRUSTED_PROXIES as networks (an address is a network of one)."""
    networks = []
    for item in (v.strip() for v in (value or "").split(",")):
        if not item:
            continue
        try:
            networks.append(ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f"{item!r} is not an address or network; give them comma-separated, "
                "as in 127.0.0.1,10.0.0.0/8"
            ) from None
    return networks


def _extension_names(value: str | None) -> str | None:
    """SAGA_EXTENSIONS as names, comma-separated and trimmed (None: unset)."""
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    for name in names:
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,47}", name):
            raise ValueError(
                f"{name!r} is not an extension's name; names are a-z, 0-9, '_' and '-', "
                "comma-separated (empty: none)"
            )
    return ",".join(names)


class _ExtensionsOnly(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SAGA_", extra="ignore", frozen=True)

    extensions: str | None = None

    @field_validator("extensions")
    @classmethod
    def _extensions_are_names(cls, value: str | None) -> str | None:
        return _extension_names(value)


class SettingsError(ValueError):
    """Settings the environment gives wrong: one line for each bad variable, naming it,
    what it was given and what it takes."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def load_settings(*, servers: bool = True) -> Settings:
    """The settings from the environment, every one checked, or SettingsError. Without
    `servers` the servers' URLs keep their defaults and are not read (for a process
    that runs none of them: the embedded demo)."""
    defaults: dict[str, Any] = (
        {} if servers else {name: Settings.model_fields[name].default for name in _URL_FORMS}
    )
    try:
        return Settings(**defaults)
    except ValidationError as exc:
        raise SettingsError(_problems(exc)) from None


def extensions_setting() -> str | None:
    """SAGA_EXTENSIONS alone, checked as Settings checks it (else SettingsError): the
    command line is made from it before the other settings are read, so that a bad one
    of those is said by the command that reads it, with the others."""
    try:
        return _ExtensionsOnly().extensions
    except ValidationError as exc:
        raise SettingsError(_problems(exc)) from None


def _problems(exc: ValidationError) -> list[str]:
    """One line per bad variable (its first error: a value has one thing wrong at a time)."""
    lines: dict[str, str] = {}
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "settings"
        if name not in lines:
            shown = _shown(name, error.get("input"))
            lines[name] = f"SAGA_{name.upper()}={shown}: {_reason(name, error)}"
    return list(lines.values())


def _shown(name: str, value: object) -> str:
    """The value as given, quoted; a secret is not shown, nor a URL's password."""
    variable = f"SAGA_{name}".upper()
    # As written, not as converted (30s, not 30.0); names are read in any case.
    given = next((v for k, v in os.environ.items() if k.upper() == variable), value)
    if name == "auth_secret":
        return "'***'"
    if name in _URL_FORMS and isinstance(given, str):
        return repr(without_password(given))
    return repr(given)


def without_password(url: str) -> str:
    """The URL with its password, if it has one, as *** (in each URL of a comma list)."""
    if "," in url:
        return ",".join(without_password(part) for part in url.split(","))
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        password = None
    if not password:
        return url
    return url.replace(f":{password}@", ":***@", 1)


_BOUNDS: Final = {
    "greater_than": ("gt", "more than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}


def _reason(name: str, error: ErrorDetails) -> str:
    """What is wrong, in words that say what the variable takes."""
    context = error.get("ctx") or {}
    if error["type"] == "value_error":
        return str(context.get("error", error["msg"]))
    if error["type"] in _BOUNDS:
        key, words = _BOUNDS[error["type"]]
        unit = f"s; {DURATION_FORMS}" if _is_duration(name) else ""
        bound = context.get(key)
        shown = f"{bound:g}" if isinstance(bound, float) else str(bound)
        return f"must be {words} {shown}{unit}"
    return error["msg"].replace("Input should", "should", 1)


def _is_duration(name: str) -> bool:
    """Whether the setting is a Duration (or an optional one): its bounds are seconds."""
    field = Settings.model_fields.get(name)
    if field is None:
        return False
    validators = [*field.metadata, *(m for a in get_args(field.annotation) for m in _metadata(a))]
    return any(isinstance(v, BeforeValidator) and v.func is parse_seconds for v in validators)


def _metadata(annotation: object) -> tuple[object, ...]:
    """The metadata of an Annotated type (nothing for any other)."""
    return tuple(getattr(annotation, "__metadata__", ()))
