"""The shell's clock and id source; the core never reads either, they are passed in."""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh random id (32 hex digits)."""
    return uuid.uuid4().hex


def marker_of(now: datetime) -> int:
    """A time as whole microseconds: exact in a Redis sorted-set score."""
    return int(now.timestamp() * 1_000_000)
