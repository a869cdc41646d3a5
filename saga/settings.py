"""Settings from the environment (prefix SAGA_), read once at start-up and passed down."""

import re
from typing import Annotated, Final, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.topology import NAMESPACE_PATTERN
from saga.eventloop import EventLoop

DEFAULT_RETENTION: Final = 7 * 86400

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(value: object) -> object:
    """'90', '90s', '15m', '12h' or '7d' as seconds; anything else is left to pydantic."""
    if isinstance(value, str) and (
        match := re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
    ):
        return float(match[1]) * _UNITS[match[2] or "s"]
    return value


Duration = Annotated[float, BeforeValidator(_seconds)]


class Settings(BaseSettings):
    """Every knob of every process. Nothing else reads the environment."""

    model_config = SettingsConfigDict(env_prefix="SAGA_", extra="ignore", frozen=True)

    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    redis_url: str = "redis://127.0.0.1:6379/0"
    auth_url: str = "http://127.0.0.1:7002"
    namespace: str = "saga"

    auth_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key for tokens; when unset the auth service keeps one in Redis",
    )
    token_ttl: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    auth_timeout: float = Field(default=2.0, gt=0, le=30)
    rate_limit: str = Field(default="20/second", description="per customer: 20/second, 600/minute")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)

    prefetch: int = Field(default=32, ge=1, le=1000)
    redis_max_connections: int = Field(default=64, ge=1, le=10_000)
    relay_interval: float = Field(default=1.0, gt=0, le=60)
    relay_grace: float = Field(default=5.0, ge=0, le=600)

    # Override the saga definitions' own timeout and retry policy, for every step.
    step_timeout: float | None = Field(default=None, gt=0, le=86400)
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    retry_backoff: float | None = Field(default=None, ge=0, le=3600)
    compensation_max_attempts: int | None = Field(default=None, ge=1, le=1000)
    timer_interval: float = Field(default=0.2, gt=0, le=60)
    timer_lease: float = Field(default=30.0, gt=0, le=3600)

    # How long a completed or compensated saga, and the participants' memory of the
    # commands they answered, are kept; failed sagas stay until replayed.
    retention: Duration = Field(default=DEFAULT_RETENTION, ge=1, le=10 * 365 * 86400)

    # uvloop where it is installed ("auto"), or asyncio's own loop.
    event_loop: EventLoop = "auto"

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("rate_limit")
    @classmethod
    def _rate_is_valid(cls, value: str) -> str:
        from saga.api.limits import Rate

        Rate.parse(value)
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace_is_safe(cls, value: str) -> str:
        if not NAMESPACE_PATTERN.fullmatch(value):
            raise ValueError(f"must match {NAMESPACE_PATTERN.pattern}")
        return value
