"""The bounds the references (docs/http-api.md, docs/cli.md) state are the bounds the code enforces."""

from pathlib import Path
from typing import Any

from contracts.money import MAX_MONEY
from saga.api.idempotency import MAX_KEY_LENGTH
from services.api import CreateOrderRequest
from services.payment import MAX_BALANCE
from services.stock import MAX_STOCK
from tests.shop_saga import BUILTINS

DOCS = Path(__file__).resolve().parents[2] / "docs"
REFERENCE = DOCS / "http-api.md"
# The references' lines joined as they read.
API = " ".join(REFERENCE.read_text(encoding="utf-8").split())
CLI = " ".join((DOCS / "cli.md").read_text(encoding="utf-8").split())


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


def test_the_cli_reference_states_the_bounds_of_stock_levels_prices_and_balances() -> None:
    stated = [
        f"a quantity is 0 to {MAX_STOCK:,}",
        f"more than 0 and at most {MAX_MONEY:,}",
        f"past {MAX_BALANCE:,.2f} is refused",
    ]
    assert [s for s in stated if s not in CLI] == []
    # Counted exactly in Lua's doubles, with room: a level, or a balance in cents.
    assert MAX_STOCK * 1000 < 2**53 and MAX_BALANCE * 100 * 100 < 2**53
