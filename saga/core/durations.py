"""Durations as people write them (`500ms`, `30s`, `5m`, `2h`, `7d`, or seconds): one
syntax for definition documents and settings, read and written here."""

import math
import re
from datetime import timedelta
from decimal import Decimal
from typing import Final

# What every refusal says, so a reader learns the whole syntax from any mistake.
DURATION_FORMS: Final = "a duration is written 500ms, 30s, 5m, 2h, 7d, or a number of seconds"

_WRITTEN: Final = re.compile(r"\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
# How much of a duration each unit is, largest first (the order duration_text tries).
UNITS: Final = {
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
    "ms": timedelta(milliseconds=1),
}


class DurationError(ValueError):
    """Not a duration: the message says what was wrong and how one is written."""


def parse_duration(value: object) -> timedelta:
    """A duration from its text (`500ms`, `1.5s`, `5m`, `2h`, `7d`, `90`: seconds, any
    space around) or from a number of seconds; raises DurationError for anything else,
    a negative one, or one too long to hold."""
    if isinstance(value, str):
        found = _WRITTEN.fullmatch(value)
        if found is None:
            raise DurationError(DURATION_FORMS)
        seconds = float(found[1]) * UNITS[found[2] or "s"].total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise DurationError(f"not a finite number; {DURATION_FORMS}")
        seconds = value
    else:
        raise DurationError(DURATION_FORMS)
    if seconds < 0:
        raise DurationError(f"a duration cannot be negative; {DURATION_FORMS}")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise DurationError(f"too long for a duration; {DURATION_FORMS}") from None


def parse_seconds(value: object) -> float:
    """A duration (as parse_duration reads it) as its number of seconds."""
    return parse_duration(value).total_seconds()


def duration_text(value: timedelta) -> str:
    """A duration as people write it, in the largest unit that holds it exactly (`500ms`,
    `90s`, `2m`, `1h`, `7d`; `1.5ms`), so that parse_duration reads it back the same."""
    if value < timedelta(0):
        raise ValueError("a duration cannot be negative")
    if not value:
        return "0s"
    for unit, size in UNITS.items():
        if not value % size:
            return f"{value // size}{unit}"
    return f"{Decimal(value // timedelta(microseconds=1)) / 1000}ms"
