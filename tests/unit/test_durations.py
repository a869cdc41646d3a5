"""The one duration syntax of documents and settings: what it reads, what it refuses."""

from datetime import timedelta
from typing import Any

import pytest

from saga.core.durations import (
    DURATION_FORMS,
    DurationError,
    duration_text,
    parse_duration,
    parse_seconds,
)

READ: list[tuple[Any, timedelta]] = [
    ("500ms", timedelta(milliseconds=500)),
    ("1.5ms", timedelta(microseconds=1500)),
    ("30s", timedelta(seconds=30)),
    ("1.5s", timedelta(seconds=1.5)),
    ("5m", timedelta(minutes=5)),
    ("2h", timedelta(hours=2)),
    ("7d", timedelta(days=7)),
    ("0.5d", timedelta(hours=12)),
    ("90", timedelta(seconds=90)),  # no unit: seconds
    ("0", timedelta(0)),
    ("0s", timedelta(0)),
    (" 15 m ", timedelta(minutes=15)),  # space around and between
    (90, timedelta(seconds=90)),
    (0.25, timedelta(milliseconds=250)),
    (0, timedelta(0)),
]


@pytest.mark.parametrize(("written", "meant"), READ)
def test_a_duration_is_read_as_people_write_it(written: Any, meant: timedelta) -> None:
    assert parse_duration(written) == meant
    assert parse_seconds(written) == meant.total_seconds()


REFUSED: list[tuple[Any, str]] = [
    ("forever", DURATION_FORMS),
    ("", DURATION_FORMS),
    ("10 seconds", DURATION_FORMS),
    ("5M", DURATION_FORMS),  # units are lower case: M is not minutes nor months
    ("1w", DURATION_FORMS),
    ("1h30m", DURATION_FORMS),
    ("1e3", DURATION_FORMS),
    (".5s", DURATION_FORMS),
    ("PT10S", DURATION_FORMS),  # ISO 8601 is the stored form of documents, not a setting's
    ("-1", "cannot be negative"),
    ("-5s", "cannot be negative"),
    (-0.5, "cannot be negative"),
    (float("nan"), "not a finite number"),
    (float("inf"), "not a finite number"),
    ("99999999999d", "too long for a duration"),
    (10**20, "too long for a duration"),
    (True, DURATION_FORMS),
    (None, DURATION_FORMS),
    ([5], DURATION_FORMS),
]


@pytest.mark.parametrize(("written", "said"), REFUSED)
def test_anything_else_is_refused_saying_how_a_duration_is_written(written: Any, said: str) -> None:
    with pytest.raises(DurationError) as refused:
        parse_duration(written)
    assert said in str(refused.value)
    assert str(refused.value).endswith(DURATION_FORMS)


WRITTEN: list[tuple[timedelta, str]] = [
    (timedelta(0), "0s"),
    (timedelta(milliseconds=500), "500ms"),
    (timedelta(microseconds=1500), "1.5ms"),
    (timedelta(seconds=61), "61s"),
    (timedelta(minutes=2), "2m"),
    (timedelta(hours=2), "2h"),
    (timedelta(hours=36), "36h"),
    (timedelta(days=7), "7d"),
]


@pytest.mark.parametrize(("duration", "text"), WRITTEN)
def test_a_duration_is_written_in_the_largest_unit_that_holds_it_and_reads_back(
    duration: timedelta, text: str
) -> None:
    assert duration_text(duration) == text
    assert parse_duration(text) == duration


def test_a_negative_duration_is_not_written() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        duration_text(timedelta(seconds=-1))
