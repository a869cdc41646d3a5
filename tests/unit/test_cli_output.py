"""What the CLI prints of data (ids, keys, reasons) is that data: never read as rich markup
or emoji shortcodes."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from rich.table import Table

from saga.cli.ops import print_replay
from saga.cli.output import console
from saga.cli.sagas import print_saga, sagas_table
from saga.views import saga_view
from services.cli import _orders_table, _show_account, _show_product
from services.order import Order
from services.payment import Account, LedgerEntry
from services.stock import Product
from tests.shop_saga import ORDER_SAGA
from tests.unit.sagas import Run

# `:two:` became 2️⃣, `[b]x[/b]` became a bold x, `[red]` vanished.
DATA = ":two: [b]x[/b] [red]y :smile:"
AT = datetime(2026, 11, 30, 9, 15, 2, tzinfo=UTC)


def test_the_console_prints_text_and_table_cells_as_given(
    capsys: pytest.CaptureFixture[str],
) -> None:
    table = Table("value")
    table.add_row(DATA)
    out = console()
    out.print(DATA)
    out.print(table)
    assert capsys.readouterr().out.count(DATA) == 2


def test_a_replay_dry_run_prints_keys_as_they_are(capsys: pytest.CaptureFixture[str]) -> None:
    key = f"s1:{DATA}:compensate:replay1"
    result = {
        "saga_id": "s1",
        "outcome": "replayed",
        "status": "failed",
        "direction": "undo",
        "published": False,
        "commands": [{"type": "RefundPayment", "participant": "payment", "idempotency_key": key}],
    }
    print_replay([result], dry_run=True)
    assert f"(key {key})" in capsys.readouterr().out


def test_products_accounts_and_orders_print_their_ids_as_they_are(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _show_product(
        Product(product_id=":smile:", available=1, reserved=0, sold=0, price=Decimal(1)),
        json_out=False,
    )
    ledger = [LedgerEntry(saga_id=DATA, kind="charge", amount=Decimal(1), at=AT)]
    _show_account(Account(customer=DATA, balance=Decimal(1), ledger=ledger), json_out=False)
    order = Order(
        order_id=DATA,
        saga_id="s1",
        customer="ann@example.com",
        vendor="bob@example.com",
        items=[],
        amount=Decimal(1),
        delivery_address=DATA,
        description=None,
        payment_method="Cash on Delivery",
        status="created",
        created_at=AT,
    )
    console().print(_orders_table([order]))
    out = capsys.readouterr().out
    assert ":smile:" in out
    assert out.count(DATA) == 3, out


def test_a_saga_s_reason_prints_as_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    run = Run.start()
    run.succeed()
    run.fail(DATA)
    run.succeed()  # release
    assert run.state.reason is not None and DATA in run.state.reason
    console().print(sagas_table([run.state]))
    records = [r for d in run.decisions for r in d.records]
    view = {**saga_view(run.state, ORDER_SAGA).model_dump(mode="json"), "customer": "ann"}
    print_saga(console(), run.state, records, view)
    out = capsys.readouterr().out
    assert out.count(DATA) >= 3, out  # the list, the saga's header, its events
