"""What the conformance check sends: payloads given, made up from a contract, or rendered
from a definition's templates over a made-up saga; and where none can be had, why."""

from typing import Any

import pytest

from saga.core.document import read_definition
from saga.participant.check_samples import (
    MADE_UP_EMAIL,
    Action,
    SampleError,
    StepSample,
    learn_steps,
    named_steps,
    sample_of_schema,
)
from services.messages import COMMANDS
from tests.courier import DELIVERY
from tests.shop_saga import BUILTINS

ORDER = BUILTINS["order"][1]


@pytest.mark.parametrize(
    ("schema", "sample"),
    [
        ({"type": "string"}, "conformance-check"),
        ({"type": "string", "format": "email"}, MADE_UP_EMAIL),
        ({"type": "string", "pattern": "^[0-9]+$"}, "1"),
        ({"type": "string", "pattern": "^[A-Z]+$"}, "CHECK"),
        ({"type": "string", "pattern": "^[A-Z]{3}$", "maxLength": 3}, "CHE"),
        ({"type": "string", "minLength": 20}, "conformance-checkxxx"),
        ({"type": "string", "maxLength": 5}, "confo"),
        ({"type": "integer", "minimum": 3}, 3),
        ({"type": "integer", "maximum": 0}, 0),
        ({"type": "number", "exclusiveMinimum": 1}, 2),
        ({"type": "integer", "minimum": 5, "multipleOf": 4}, 8),
        ({"type": ["null", "boolean"]}, False),
        ({"enum": ["b", "a"]}, "b"),
        ({"const": 7}, 7),
        ({"type": "string", "examples": ["shown"]}, "shown"),
        ({"anyOf": [{"type": "null"}, {"type": "integer"}]}, 1),
        ({"type": "array", "items": {"type": "integer"}, "minItems": 2}, [1, 1]),
        (
            {
                "type": "object",
                "required": ["a"],
                "properties": {"a": {"$ref": "#/$defs/A"}, "b": {"type": "string"}},
                "$defs": {"A": {"type": "integer"}},
            },
            {"a": 1},
        ),
        ({}, "conformance-check"),
    ],
)
def test_a_schema_sample_is_the_plainest_value_it_accepts(
    schema: dict[str, Any], sample: Any
) -> None:
    assert sample_of_schema(schema) == sample


def test_a_schema_no_sample_of_mine_meets_is_a_clear_error() -> None:
    with pytest.raises(SampleError, match=r"cannot make up the code: no string of mine matches"):
        sample_of_schema({"type": "string", "pattern": "^zz[0-9]{4}$"}, what="the code")
    with pytest.raises(
        SampleError,
        match=r"cannot make up x \(the value: 2 is greater than the maximum of 1\): give one",
    ):
        sample_of_schema({"type": "integer", "multipleOf": 2, "maximum": 1}, what="x")


def test_the_shop_steps_come_from_the_order_saga_with_payloads_from_their_contracts() -> None:
    stock = learn_steps("stock", [ORDER, ORDER], models=COMMANDS)
    assert [(s.step, s.action.command, s.compensation) for s in stock][1] == (
        "confirm_stock",
        "ConfirmStock",
        None,
    )
    reserve = stock[0]
    assert reserve.action == Action(
        "ReserveStock",
        {"items": [{"product_id": "conformance-check", "quantity": 1, "unit_price": None}]},
        "StockReserved",
    )
    assert reserve.compensation == Action(
        "ReleaseStock", {"product_ids": ["conformance-check"]}, "StockReleased"
    )
    (payment,) = learn_steps("payment", [ORDER], models=COMMANDS)
    assert payment.action.payload == {"customer": MADE_UP_EMAIL, "amount": "1.00"}
    (order,) = learn_steps("order", [ORDER], models=COMMANDS)
    assert order.action.payload["vendor"] == MADE_UP_EMAIL
    assert order.compensation == Action("CancelOrder", {}, "OrderCancelled")


def test_without_a_contract_the_template_renders_over_a_made_up_saga() -> None:
    book, insure = learn_steps("courier", [read_definition(DELIVERY)])
    assert book == StepSample(
        Action(
            "BookCourier", {"address": "conformance-check", "for": MADE_UP_EMAIL}, "CourierBooked"
        ),
        Action("CancelCourier", {"booking": None}, "CourierCancelled"),
        "book_courier",
    )
    assert insure.action.payload == {"value": 1}


def test_a_template_that_needs_an_earlier_result_asks_for_a_payload() -> None:
    with pytest.raises(SampleError) as raised:
        learn_steps("payment", [ORDER])
    assert str(raised.value) == (
        "cannot make up a payload for ChargePayment from definition order "
        "(steps.reserve_stock.result.amount: no such field): give one "
        "(--payload ChargePayment=JSON)"
    )
    (payment,) = learn_steps(
        "payment",
        [ORDER],
        payloads={"ChargePayment": {"customer": "a@example.com", "amount": "2.50"}},
        models=COMMANDS,
    )
    assert payment.action.payload == {"customer": "a@example.com", "amount": "2.50"}


def test_a_payload_given_is_checked_by_its_contract() -> None:
    with pytest.raises(SampleError, match=r"the payload given for ChargePayment: amount: "):
        learn_steps(
            "payment",
            [ORDER],
            payloads={"ChargePayment": {"customer": "a@example.com", "amount": "-1"}},
            models=COMMANDS,
        )


def test_an_http_participant_is_not_one_the_check_drives() -> None:
    document = read_definition(
        {
            "name": "web",
            "version": 1,
            "participants": {"web": {"http": {"url": "http://127.0.0.1:1/"}}},
            "steps": [{"name": "call", "participant": "web", "action": {"command": "Call"}}],
        }
    )
    with pytest.raises(SampleError, match="web is an HTTP participant"):
        learn_steps("web", [document])


def test_steps_named_without_a_definition_take_the_payloads_given() -> None:
    steps = named_steps(
        ["BookCourier:CancelCourier", "Ping"],
        payloads={"BookCourier": {"address": "x"}, "CancelCourier": {}, "Ping": {}},
    )
    assert steps == [
        StepSample(
            Action("BookCourier", {"address": "x"}),
            Action("CancelCourier", {}),
            "book_courier",
        ),
        StepSample(Action("Ping", {}), None, "ping"),
    ]
    with pytest.raises(
        SampleError, match=r"no payload for Insure: give one \(--payload Insure=JSON\)"
    ):
        named_steps(["Insure"])
