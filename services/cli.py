"""The shop's data commands for operators, demos and tests: stock, balances, vendors, orders."""

from decimal import Decimal
from typing import Annotated, Any, Final

import typer
from pydantic import TypeAdapter, ValidationError
from rich.table import Table

from saga.cli import values
from saga.cli.output import CliError, Json, console, print_json, with_redis
from saga.cli.presence import refuse_if_lifeless
from saga.clock import utc_text
from saga.connections import AnyRedis
from saga.settings import Settings
from services.messages import ProductId
from services.order import Order, OrderService
from services.payment import Account, PaymentService
from services.stock import MAX_STOCK, Product, StockService

stock_app = typer.Typer(help="Products: stock levels and prices.", no_args_is_help=True)
payment_app = typer.Typer(help="Customers' balances and ledgers.", no_args_is_help=True)
order_app = typer.Typer(help="Orders and vendors.", no_args_is_help=True)
vendor_app = typer.Typer(help="Vendors that may receive orders.", no_args_is_help=True)
order_app.add_typer(vendor_app, name="vendor")


_PRODUCT_ID: Final = TypeAdapter(ProductId)


def product_id(text: str) -> str:
    """A product id as the wire carries it."""
    try:
        return _PRODUCT_ID.validate_python(text)
    except ValidationError:
        raise typer.BadParameter(
            f"{text!r} is not a product id (1 to 64 letters, digits, _ . : -)"
        ) from None


def _email_argument(help_text: str) -> Any:
    return typer.Argument(metavar="EMAIL", parser=values.email, help=help_text)


# --- stock ---------------------------------------------------------------------------


def _show_product(product: Product, json_out: bool) -> None:
    if json_out:
        print_json(product)
        return
    table = Table("product", "available", "reserved", "sold", "price")
    table.add_row(
        product.product_id,
        str(product.available),
        str(product.reserved),
        str(product.sold),
        f"{product.price:.2f}",
    )
    console().print(table)


@stock_app.command("set")
def stock_set(
    product_id: Annotated[
        str,
        typer.Argument(metavar="PRODUCT_ID", parser=product_id, help="The product's id."),
    ],
    quantity: Annotated[
        int,
        typer.Option(
            min=0, max=MAX_STOCK, metavar="N", help=f"Units available: 0 to {MAX_STOCK:,}."
        ),
    ],
    price: Annotated[
        Decimal,
        typer.Option(
            metavar="PRICE", parser=values.price, help="Unit price, e.g. 12.50 (more than 0)."
        ),
    ],
    json_out: Json = False,
) -> None:
    """Set a product's available quantity and price."""

    async def work(redis: AnyRedis, settings: Settings) -> Product:
        return await StockService(redis, settings.namespace).set_product(
            product_id, quantity=quantity, price=price
        )

    _show_product(with_redis(work), json_out)


@stock_app.command("show")
def stock_show(
    product_id: Annotated[str, typer.Argument(metavar="PRODUCT_ID", help="The product's id.")],
    json_out: Json = False,
) -> None:
    """Show a product: available, reserved, sold, price."""

    async def work(redis: AnyRedis, settings: Settings) -> Product | None:
        return await StockService(redis, settings.namespace).product(product_id)

    product = with_redis(work)
    if product is None:
        raise CliError(f"no product {product_id!r}")
    _show_product(product, json_out)


# --- payment -------------------------------------------------------------------------


def _show_account(account: Account, json_out: bool) -> None:
    if json_out:
        print_json(account)
        return
    out = console()
    out.print(f"{account.customer}: balance {account.balance:.2f}")
    if account.ledger:
        table = Table("at", "kind", "amount", "saga")
        for entry in account.ledger:
            table.add_row(
                utc_text(entry.at, seconds=True),
                entry.kind,
                f"{entry.amount:.2f}",
                entry.saga_id,
            )
        out.print(table)


# Unknown options pass as arguments: `-5` is an amount (refused as one), not an option.
@payment_app.command("deposit", context_settings={"ignore_unknown_options": True})
def payment_deposit(
    customer: Annotated[str, _email_argument("The customer's email.")],
    amount: Annotated[
        Decimal,
        typer.Argument(metavar="AMOUNT", parser=values.amount, help="Amount to add, e.g. 100.00."),
    ],
    json_out: Json = False,
) -> None:
    """Add money to a customer's balance."""

    async def work(redis: AnyRedis, settings: Settings) -> Account:
        try:
            return await PaymentService(redis, settings.namespace).deposit(customer, amount)
        except ValueError as exc:
            raise CliError(f"deposit refused: {exc}") from None

    _show_account(with_redis(work), json_out)


@payment_app.command("show")
def payment_show(
    customer: Annotated[str, _email_argument("The customer's email.")],
    json_out: Json = False,
) -> None:
    """Show a customer's balance and ledger of charges and refunds."""

    async def work(redis: AnyRedis, settings: Settings) -> Account | None:
        return await PaymentService(redis, settings.namespace).account(customer)

    account = with_redis(work)
    if account is None:
        raise CliError(f"no account for {customer!r} (no deposit, no charge)")
    _show_account(account, json_out)


# --- orders and vendors ----------------------------------------------------------------


@vendor_app.command("add")
def vendor_add(
    vendor: Annotated[str, _email_argument("The vendor's email.")],
    json_out: Json = False,
) -> None:
    """Register a vendor."""

    async def work(redis: AnyRedis, settings: Settings) -> None:
        await OrderService(redis, settings.namespace).add_vendor(vendor)

    with_redis(work)
    if json_out:
        print_json({"vendor": vendor})
    else:
        console().print(f"vendor {vendor} registered")


@vendor_app.command("list")
def vendor_list(json_out: Json = False) -> None:
    """List registered vendors."""

    async def work(redis: AnyRedis, settings: Settings) -> list[str]:
        vendors = await OrderService(redis, settings.namespace).vendors()
        if not vendors:
            await refuse_if_lifeless(redis, settings, empty="no vendors")
        return vendors

    vendors = with_redis(work)
    if json_out:
        print_json(vendors)
    elif not vendors:
        console().print("no vendors")
    else:
        for vendor in vendors:
            console().print(vendor)


def _orders_table(orders: list[Order]) -> Table:
    table = Table("order", "status", "customer", "vendor", "amount", "items", "saga")
    for o in orders:
        items = ", ".join(f"{i.quantity}x{i.product_id}" for i in o.items)
        table.add_row(
            o.order_id, o.status, o.customer, o.vendor, f"{o.amount:.2f}", items, o.saga_id
        )
    return table


@order_app.command("show")
def order_show(
    order_id: Annotated[str, typer.Argument(metavar="ORDER_ID", help="The order's id.")],
    json_out: Json = False,
) -> None:
    """Show one order."""

    async def work(redis: AnyRedis, settings: Settings) -> Order | None:
        return await OrderService(redis, settings.namespace).order(order_id)

    order = with_redis(work)
    if order is None:
        raise CliError(f"no order {order_id!r}")
    if json_out:
        print_json(order)
    else:
        console().print(_orders_table([order]))


@order_app.command("list")
def order_list(
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 100,
    json_out: Json = False,
) -> None:
    """List orders, newest first."""

    async def work(redis: AnyRedis, settings: Settings) -> list[Order]:
        orders = await OrderService(redis, settings.namespace).orders(limit=limit)
        if not orders:
            await refuse_if_lifeless(redis, settings, empty="no orders")
        return orders

    orders = with_redis(work)
    if json_out:
        print_json(orders)
    elif not orders:
        console().print("no orders")
    else:
        console().print(_orders_table(orders))
