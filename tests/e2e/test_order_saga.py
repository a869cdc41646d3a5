"""The order saga end to end: real processes, real RabbitMQ and Redis, driven over HTTP and the CLI."""

from decimal import Decimal

import pytest

from tests.e2e.shop import Shop, open_shop
from tests.e2e.system import System


@pytest.fixture
def shop(system: System) -> Shop:
    return open_shop(system)


def test_a_completed_order_moves_stock_money_and_records_the_order(system: System) -> None:
    shop = open_shop(system, via_cli=True)  # seeded the way docs/tutorial.md does it
    saga = shop.order([("apple", 3), ("pear", 1)])
    assert saga["status"] == "completed"
    assert saga["reason"] is None
    assert saga["summary"]["amount"] == "27.50"
    assert [s["status"] for s in saga["steps"]] == ["succeeded"] * 4
    assert shop.stock("apple") | {"price": None} == {
        "product_id": shop.products["apple"],
        "available": 7,
        "reserved": 0,
        "sold": 3,
        "price": None,
    }
    account = shop.account()
    assert account["balance"] == "72.50"
    assert [(e["kind"], e["amount"], e["saga_id"]) for e in account["ledger"]] == [
        ("charge", "27.50", saga["saga_id"])
    ]
    order = shop.system.cli_json("order", "show", saga["summary"]["order_id"])
    assert order["saga_id"] == saga["saga_id"]
    assert order["status"] == "created"
    assert order["customer"] == shop.customer and order["vendor"] == shop.vendor
    assert order["amount"] == "27.50"
    assert order["items"] == [
        {"product_id": shop.products["apple"], "quantity": 3, "price": "5.00"},
        {"product_id": shop.products["pear"], "quantity": 1, "price": "12.50"},
    ]
    assert order["order_id"] in [o["order_id"] for o in shop.system.cli_json("order", "list")]


def test_insufficient_stock_compensates_with_nothing_taken(shop: Shop) -> None:
    saga = shop.order([("apple", 1), ("pear", 3)])
    assert (saga["status"], saga["reason"]) == ("compensated", "insufficient_stock")
    assert saga["summary"]["order_id"] is None
    assert shop.stock("apple")["available"] == 10 and shop.stock("apple")["reserved"] == 0
    assert shop.account()["ledger"] == []


def test_insufficient_funds_releases_the_stock(system: System) -> None:
    shop = open_shop(system, balance="10.00")
    saga = shop.order([("apple", 3)])
    assert (saga["status"], saga["reason"]) == ("compensated", "insufficient_funds")
    assert [s["status"] for s in saga["steps"]] == ["compensated", "failed", "pending", "pending"]
    assert shop.stock("apple") | {"price": None} == {
        "product_id": shop.products["apple"],
        "available": 10,
        "reserved": 0,
        "sold": 0,
        "price": None,
    }
    assert shop.account() | {"customer": None} == {
        "customer": None,
        "balance": "10.00",
        "ledger": [],
    }


def test_an_unknown_vendor_refunds_and_releases(shop: Shop) -> None:
    saga = shop.order([("apple", 2)], vendor_email="nobody@example.com")
    assert (saga["status"], saga["reason"]) == ("compensated", "unknown_vendor")
    assert [s["status"] for s in saga["steps"]] == [
        "compensated",
        "compensated",
        "failed",
        "pending",
    ]
    account = shop.account()
    assert account["balance"] == "100.00"
    assert [(e["kind"], e["amount"]) for e in account["ledger"]] == [
        ("charge", "10.00"),
        ("refund", "10.00"),
    ]
    assert (shop.stock("apple")["available"], shop.stock("apple")["reserved"]) == (10, 0)


def test_saga_show_tells_what_happened_in_time_order_and_what_was_undone(shop: Shop) -> None:
    saga = shop.order([("apple", 2)], vendor_email="nobody@example.com")
    assert (saga["summary"], saga["undone"]) == (
        {"order_id": None, "amount": None},
        {"amount": "10.00"},
    )
    assert saga["summary"]["amount"] is None  # refunded: not the order's amount any more
    shown = shop.system.cli_json("show", saga["saga_id"])
    assert (shown["summary"], shown["undone"]) == (saga["summary"], saga["undone"])
    assert [(r["step"], r["action"], r["attempts"], r["outcome"]) for r in shown["timeline"]] == [
        ("reserve_stock", "execute", 1, "succeeded, undone"),
        ("take_payment", "execute", 1, "succeeded, undone"),
        ("create_order", "execute", 1, "failed: unknown_vendor"),
        ("take_payment", "compensate", 1, "compensated"),
        ("reserve_stock", "compensate", 1, "compensated"),
        ("confirm_stock", "execute", 0, "not run"),
    ]
    starts = [r["start"] for r in shown["timeline"][:5]]
    assert starts == sorted(starts)
    text = shop.system.cli("show", saga["saga_id"]).stdout
    assert "amount 10.00 (undone)" in text
    assert "None" not in text


def test_cash_on_delivery_charges_nothing(shop: Shop) -> None:
    saga = shop.order([("pear", 2)], payment_method="Cash on Delivery")
    assert saga["status"] == "completed"
    assert [s["status"] for s in saga["steps"]] == [
        "succeeded",
        "skipped",
        "succeeded",
        "succeeded",
    ]
    assert shop.account() | {"customer": None} == {
        "customer": None,
        "balance": "100.00",
        "ledger": [],
    }
    assert shop.stock("pear")["sold"] == 2
    order = shop.system.cli_json("order", "show", saga["summary"]["order_id"])
    assert order["payment_method"] == "Cash on Delivery"


def test_a_price_the_shop_does_not_ask_fails_the_order(shop: Shop) -> None:
    body_items = [{"product_id": shop.products["apple"], "quantity": 1, "unit_price": "4.99"}]
    response = shop.system.place_order(shop.token, shop.body([], items=body_items))
    assert response.status_code == 202
    saga = shop.system.wait_terminal(shop.token, response.json()["saga_id"])
    assert (saga["status"], saga["reason"]) == ("compensated", "price_mismatch")


def test_the_event_log_and_the_operator_view(shop: Shop) -> None:
    saga = shop.order([("apple", 1)], payment_method="Debit Card")
    response = shop.system.saga(shop.token, saga["saga_id"])
    events = shop.system.api_get(shop.token, f"/sagas/{saga['saga_id']}/events").json()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "SagaStarted" and events[-1]["type"] == "SagaCompleted"
    assert events[0]["data"]["customer"] == shop.customer
    assert response.json()["updated_at"] >= response.json()["created_at"]

    shown = shop.system.cli_json("show", saga["saga_id"])
    assert shown["status"] == "completed"
    assert [e["type"] for e in shown["events"]] == [e["type"] for e in events]
    listed = shop.system.cli_json("list", "--status", "completed", "--limit", "1000")
    assert saga["saga_id"] in [s["saga_id"] for s in listed]
    assert all(s["status"] == "completed" for s in listed)
    table = shop.system.cli("show", saga["saga_id"]).stdout
    assert "reserve_stock" in table and "SagaCompleted" in table


def test_money_is_exact(shop: Shop) -> None:
    shop.system.cli("stock", "set", shop.products["apple"], "--quantity", "10", "--price", "0.10")
    saga = shop.order(
        [("apple", 3)],
        items=[{"product_id": shop.products["apple"], "quantity": 3, "unit_price": 0.1}],
    )
    assert saga["status"] == "completed"
    assert saga["summary"]["amount"] == "0.30"
    assert Decimal(shop.account()["balance"]) == Decimal("99.70")
