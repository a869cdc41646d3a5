"""What `saga demo` does with the shop: products, balances and a vendor, then a mix of
orders that end each way an order can."""

from decimal import Decimal
from typing import Any, Final

from saga.connections import AnyRedis
from saga.extensions import Demo, DemoRequest
from saga.settings import Settings
from services.order import OrderService
from services.payment import PaymentService
from services.stock import StockService

VENDOR: Final = "shop@example.com"
BALANCES: Final = {
    "alice@example.com": "10000.00",
    "dave@example.com": "0.00",
    "carol@example.com": "500.00",
    "bob@example.com": "1.00",
    "erin@example.com": "500.00",
}


def _order(
    name: str,
    customer: str,
    items: list[dict[str, Any]],
    *,
    payment_method: str = "Credit Card",
    vendor: str = VENDOR,
    expect: str = "completed",
) -> DemoRequest:
    body = {
        "vendor_email": vendor,
        "delivery_address": "1 Demo Street",
        "items": items,
        "payment_method": payment_method,
    }
    return DemoRequest(name, customer, "/orders/create_order", body, expect)


ORDERS: Final = (
    _order("completes", "alice@example.com", [{"product_id": "apple", "quantity": 2}]),
    _order(
        "cash on delivery",
        "dave@example.com",
        [{"product_id": "pear", "quantity": 1}],
        payment_method="Cash on Delivery",
    ),
    _order(
        "out of stock",
        "carol@example.com",
        [{"product_id": "apple", "quantity": 1}, {"product_id": "truffle", "quantity": 3}],
        expect="compensated",
    ),
    _order(
        "insufficient funds",
        "bob@example.com",
        [{"product_id": "pear", "quantity": 2}],
        expect="compensated",
    ),
    _order(
        "unknown vendor",
        "erin@example.com",
        [{"product_id": "apple", "quantity": 1}],
        vendor="nobody@example.com",
        expect="compensated",
    ),
)


async def seed(redis: AnyRedis, settings: Settings) -> None:
    """Products, the customers' balances and the vendor."""
    namespace = settings.namespace
    stock = StockService(redis, namespace)
    await stock.set_product("apple", quantity=100_000, price=Decimal("2.50"))
    await stock.set_product("pear", quantity=100_000, price=Decimal("4.00"))
    await stock.set_product("truffle", quantity=1, price=Decimal("99.00"))
    payment = PaymentService(redis, namespace)
    for customer, balance in BALANCES.items():
        if Decimal(balance) > 0:
            await payment.deposit(customer, Decimal(balance))
    await OrderService(redis, namespace).add_vendor(VENDOR)


DEMO: Final = Demo(seed=seed, requests=ORDERS)
