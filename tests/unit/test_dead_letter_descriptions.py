"""How a parked message is described, whatever it holds: safe bounded text, a stable id."""

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from saga.deadletters import PREVIEW_BYTES, describe_parked
from saga.safetext import as_text, preview, printable
from saga.transport import (
    DEAD_ID_HEADER,
    DEAD_QUEUE_HEADER,
    DEAD_REASON_HEADER,
    parked_headers,
)
from tests.hostile import HOSTILE


@pytest.mark.parametrize("name", HOSTILE)
def test_every_hostile_body_has_a_safe_preview_of_at_most_1_kb(name: str) -> None:
    letter = describe_parked(HOSTILE[name], {DEAD_REASON_HEADER: "bad", DEAD_QUEUE_HEADER: "q"})
    assert letter.preview.isprintable()
    assert len(letter.preview.encode()) <= PREVIEW_BYTES
    assert letter.size == len(HOSTILE[name])
    assert (letter.reason, letter.queue) == ("bad", "q")


def test_characters_a_terminal_acts_on_are_escaped() -> None:
    assert printable("a\nb\tc\x1b[2J\u202ed\x00", limit=100) == "a\\nb\\tc\\x1b[2J\\u202ed\\x00"
    assert printable("ok ünïcode ✓", limit=100) == "ok ünïcode ✓"


def test_a_long_preview_is_cut_with_an_ellipsis_never_inside_a_character() -> None:
    shown = preview("é".encode() * 1000, limit=1024)
    assert shown == "é" * 510 + "…"
    assert len(shown.encode()) <= 1024
    assert preview(b"short", limit=1024) == "short"
    assert preview(b"", limit=1024) == ""


def test_an_escape_counts_for_its_shown_size() -> None:
    shown = preview(b"\x00" * 2000, limit=1024)
    assert len(shown.encode()) <= 1024 and shown.endswith("…")


@pytest.mark.parametrize(
    "value",
    [b"\xff\x1b", bytearray(b"[/]"), 42, Decimal("1.5"), {"a": [1, {"b": {"c": {"d": 1}}}]}, None],
)
def test_a_header_value_of_any_kind_becomes_safe_text(value: object) -> None:
    text = as_text(value, limit=50)
    assert text.isprintable() and len(text.encode()) <= 50


def test_a_message_parked_by_rabbitmq_tells_its_reason_queue_and_time() -> None:
    died = datetime(2026, 1, 2, 3, 4, 5)
    letter = describe_parked(
        b"{}",
        {
            DEAD_ID_HEADER: "d1",
            "x-death": [{"reason": "delivery_limit", "queue": "ns.stock", "time": died}],
        },
    )
    assert letter.reason.startswith("dead-lettered by RabbitMQ: delivery_limit (")
    assert letter.queue == "ns.stock"
    assert letter.model_dump(mode="json")["at"] == "2026-01-02T03:04:05Z"


@pytest.mark.parametrize(
    "headers",
    [
        {"x-death": "not a list"},
        {"x-death": [1, 2]},
        {DEAD_REASON_HEADER: 7, DEAD_QUEUE_HEADER: 42},
        {DEAD_REASON_HEADER: b"\xff" * 5000, DEAD_QUEUE_HEADER: ["q"]},
    ],
)
def test_odd_headers_describe_without_error(headers: dict[str, Any]) -> None:
    letter = describe_parked(b"x", headers, timestamp="not a time", message_type=3)
    assert letter.reason.isprintable() and len(letter.reason.encode()) <= PREVIEW_BYTES
    assert letter.queue is None and letter.at is None and letter.type is None


def test_type_and_saga_come_from_an_envelope_and_are_safe() -> None:
    body = b'{"type": "[/]\\u001b", "saga_id": "' + b"s" * 500 + b'"}'
    letter = describe_parked(body, {}, message_type="Ignored")
    assert letter.type == "[/]\\x1b"
    assert letter.saga_id is not None and len(letter.saga_id.encode()) <= 200
    assert describe_parked(b"[]", {}, message_type="ReserveStock").type == "ReserveStock"


def test_the_id_is_the_header_else_the_message_id_else_the_body_hash() -> None:
    assert describe_parked(b"b", {DEAD_ID_HEADER: "d1"}, message_id="m1").id == "d1"
    assert describe_parked(b"b", {DEAD_ID_HEADER: "bad id!"}, message_id="m1").id == "m1"
    hashed = hashlib.sha256(b"b").hexdigest()[:32]
    assert describe_parked(b"b", {}, message_id="\x1b[2J").id == hashed
    assert describe_parked(b"b", {}, message_id=None).id == hashed


def test_parking_keeps_a_messages_dead_letter_id_or_gives_it_one() -> None:
    first = parked_headers({"h": 1}, reason="r" * 900, queue="ns.stock")
    assert first["h"] == 1 and len(first[DEAD_REASON_HEADER]) == 500
    assert first[DEAD_QUEUE_HEADER] == "ns.stock"
    again = parked_headers(first, reason="again", queue="ns.stock")
    assert again[DEAD_ID_HEADER] == first[DEAD_ID_HEADER]
    assert parked_headers({DEAD_ID_HEADER: b"odd"}, reason="r", queue="q")[DEAD_ID_HEADER] != b"odd"


def test_at_is_iso_8601_in_utc_with_z() -> None:
    east = datetime(2026, 1, 1, 5, 0, tzinfo=timezone(timedelta(hours=2)))
    letter = describe_parked(b"", {DEAD_REASON_HEADER: "r"}, timestamp=east)
    assert letter.model_dump(mode="json")["at"] == "2026-01-01T03:00:00Z"
    assert letter.at == datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
