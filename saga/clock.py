"""The shell's clock and id source; the core never reads either, they are passed in."""

import os
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def utc_text(at: datetime, *, seconds: bool = False) -> str:
    """A time as the API writes it: ISO 8601 in UTC, ending in Z (to the second: for
    tables)."""
    at = at.astimezone(UTC).replace(microsecond=0) if seconds else at.astimezone(UTC)
    return at.isoformat().replace("+00:00", "Z")


def new_id() -> str:
    """A fresh random id (32 hex digits, 128 random bits)."""
    return os.urandom(16).hex()


def marker_of(now: datetime) -> int:
    """A time as whole microseconds: exact in a Redis sorted-set score."""
    return int(now.timestamp() * 1_000_000)
