"""The wire contracts: money, envelope, registries and topology names."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from contracts import Envelope, Topology, money
from services.messages import CATALOGUE, COMMANDS, REPLIES, OrderItem


@pytest.mark.parametrize(
    ("text", "value"), [("12.5", "12.50"), ("0", "0.00"), (7, "7.00"), (" 3.10 ", "3.10")]
)
def test_money_parses_decimal_strings_and_ints(text: str | int, value: str) -> None:
    assert money(text) == Decimal(value)


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (1.5, "not a float"),
        ("1.005", "two decimal places"),
        ("-1", "negative"),
        ("NaN", "not a decimal"),
        ("Infinity", "not a decimal"),
        (Decimal("NaN"), "finite"),
        ("abc", "not a decimal"),
        ("1e3", "not a decimal"),  # an exponent is not how people write money
        ("+5", "not a decimal"),
        ("1000000000.01", "exceed"),
        (Decimal("1e400"), "exceed"),
        (Decimal("-1e400"), "negative"),
        (True, "not a float"),
    ],
)
def test_money_refuses_what_is_not_money(bad: object, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        money(bad)


def test_money_travels_as_a_decimal_string() -> None:
    item = OrderItem(product_id="p1", quantity=1, unit_price="4.5")  # type: ignore[arg-type]
    assert item.model_dump(mode="json")["unit_price"] == "4.50"


def test_envelope_round_trips_and_refuses_garbage() -> None:
    envelope = Envelope(
        message_id="m1",
        saga_id="s1",
        correlation_id="s1",
        type="ReserveStock",
        sent_at=datetime(2026, 1, 1, tzinfo=UTC),
        payload={"items": []},
    )
    assert Envelope.from_bytes(envelope.to_bytes()) == envelope
    with pytest.raises(ValidationError):
        Envelope.from_bytes(b"not json")
    with pytest.raises(ValidationError):
        Envelope.from_bytes(envelope.to_bytes().replace(b'"m1"', b'"bad id with spaces"'))


def test_every_command_and_reply_is_registered_by_its_wire_name() -> None:
    assert set(COMMANDS) == {
        "ReserveStock",
        "ReleaseStock",
        "ConfirmStock",
        "ChargePayment",
        "RefundPayment",
        "CreateOrder",
        "CancelOrder",
    }
    assert "CommandFailed" not in REPLIES  # the protocol's own, not the shop's
    assert all(name == model.__name__ for name, model in {**COMMANDS, **REPLIES}.items())
    catalogued = CATALOGUE.participants.values()
    assert {n for c in catalogued for n in c.commands} == set(COMMANDS)
    assert {n for c in catalogued for n in c.replies} == set(REPLIES)


def test_topology_names_are_namespaced() -> None:
    t = Topology("shop1", ("stock",))
    assert all(name.startswith("shop1.") for name in [*t.all_queues(), *t.all_exchanges()])
    assert t.participant_queue("stock") == "shop1.stock"
    with pytest.raises(ValueError, match="namespace"):
        Topology("Bad Namespace!")
