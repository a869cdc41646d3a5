"""The bounds the HTTP API reference (docs/http-api.md) states are the bounds the code enforces."""

from pathlib import Path
from typing import Any

from contracts.money import MAX_MONEY
from saga.api.idempotency import MAX_KEY_LENGTH
from saga.api.schemas import CreateOrderRequest
from saga.definitions import BUILTINS

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "http-api.md"
# The reference's lines joined as they read.
API = " ".join(REFERENCE.read_text(encoding="utf-8").split())


def _body() -> tuple[dict[str, Any], dict[str, Any]]:
    """The create-order body's fields and its items' fields, as FastAPI enforces them."""
    schema = CreateOrderRequest.model_json_schema()
    body = schema["properties"]
    [description] = [s for s in body["description"]["anyOf"] if s.get("type") == "string"]
    return body | {"description": description}, schema["$defs"]["ItemRequest"]["properties"]


def test_the_api_reference_states_the_bounds_the_create_order_body_enforces() -> None:
    body, item = _body()
    items, quantity, product = body["items"], item["quantity"], item["product_id"]
    address, description = body["delivery_address"], body["description"]
    stated = [
        f"`items` holds {items['minItems']} to {items['maxItems']:,} entries",
        f"`quantity` is {quantity['minimum']} to {quantity['maximum']:,}",
        f"`product_id` is {product['minLength']} to {product['maxLength']} letters, digits "
        "and `_.:-`",
        f"`delivery_address` is {address['minLength']} to {address['maxLength']:,} characters",
        f"`description` at most {description['maxLength']:,} characters",
        f"at most {MAX_MONEY:,}",
        f"`Idempotency-Key: <up to {MAX_KEY_LENGTH} printable characters>`",
    ]
    assert product["pattern"] == "^[A-Za-z0-9_.:-]+$"  # letters, digits and _.:-
    assert [s for s in stated if s not in API] == []


def test_the_order_saga_s_input_schema_has_the_create_order_body_s_bounds() -> None:
    body, item = _body()
    schema = BUILTINS["order"][1].input["properties"]
    items = schema["items"]
    assert (items["minItems"], items["maxItems"]) == (
        body["items"]["minItems"],
        body["items"]["maxItems"],
    )
    quantity = items["items"]["properties"]["quantity"]
    assert (quantity["minimum"], quantity["maximum"]) == (
        item["quantity"]["minimum"],
        item["quantity"]["maximum"],
    )
    assert items["items"]["properties"]["product_id"]["pattern"] == "^[A-Za-z0-9_.:-]{1,64}$"
    assert schema["delivery_address"]["maxLength"] == body["delivery_address"]["maxLength"]
    assert schema["description"]["maxLength"] == body["description"]["maxLength"]
