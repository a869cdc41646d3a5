"""The shop's commands and replies as pydantic models, and its contract catalogue."""

from typing import Annotated, Final, Literal

from pydantic import Field

from contracts.email import Email
from contracts.messages import Message
from contracts.money import Money
from saga.core.contracts import Catalogue, Contract

PaymentMethod = Literal["Credit Card", "Debit Card", "Cash on Delivery"]
ProductId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
MAX_QUANTITY: Final = 1_000_000
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY)]
MAX_ITEMS: Final = 100


class OrderItem(Message):
    """An item as the customer asks for it; `unit_price`, if given, must match the shop's."""

    product_id: ProductId
    quantity: Quantity
    unit_price: Money | None = None


class PricedItem(Message):
    """An item at the shop's authoritative price."""

    product_id: ProductId
    quantity: Quantity
    price: Money


# --- stock -------------------------------------------------------------------------


class ReserveStock(Message):
    """Reserve every item, or none."""

    items: list[OrderItem] = Field(min_length=1, max_length=MAX_ITEMS)


class StockReserved(Message):
    items: list[PricedItem]
    amount: Money


class ReleaseStock(Message):
    """Compensation of ReserveStock: give the saga's reservation back.

    `product_ids` names the products the reservation may hold (those of the order).
    """

    product_ids: list[ProductId] = Field(min_length=1, max_length=MAX_ITEMS)


class StockReleased(Message):
    released: bool


class ConfirmStock(Message):
    """The saga completed: the reservation becomes a sale."""

    product_ids: list[ProductId] = Field(min_length=1, max_length=MAX_ITEMS)


class StockConfirmed(Message):
    confirmed: bool


# --- payment -----------------------------------------------------------------------


class ChargePayment(Message):
    customer: Email
    amount: Money


class PaymentCharged(Message):
    amount: Money


class RefundPayment(Message):
    """Compensation of ChargePayment: refund the saga's charge, if any."""

    customer: Email


class PaymentRefunded(Message):
    amount: Money


# --- order -------------------------------------------------------------------------


class CreateOrder(Message):
    customer: Email
    vendor: Email
    items: list[PricedItem] = Field(min_length=1, max_length=MAX_ITEMS)
    amount: Money
    delivery_address: str = Field(min_length=1, max_length=500)
    description: str | None = Field(default=None, max_length=2000)
    payment_method: PaymentMethod


class OrderCreated(Message):
    order_id: str


class CancelOrder(Message):
    """Compensation of CreateOrder: cancel the saga's order, if any."""


class OrderCancelled(Message):
    order_id: str | None


def _by_name(*models: type[Message]) -> dict[str, type[Message]]:
    return {m.__name__: m for m in models}


# Each participant's commands and replies by wire type name.
STOCK_COMMANDS: Final = _by_name(ReserveStock, ReleaseStock, ConfirmStock)
PAYMENT_COMMANDS: Final = _by_name(ChargePayment, RefundPayment)
ORDER_COMMANDS: Final = _by_name(CreateOrder, CancelOrder)
COMMANDS: Final = {**STOCK_COMMANDS, **PAYMENT_COMMANDS, **ORDER_COMMANDS}
REPLIES: Final = _by_name(
    StockReserved,
    StockReleased,
    StockConfirmed,
    PaymentCharged,
    PaymentRefunded,
    OrderCreated,
    OrderCancelled,
)

# The shop's participants and their contracts, as it registers them with the engine.
CATALOGUE: Final = Catalogue(
    {
        "stock": Contract.of(
            commands=STOCK_COMMANDS.values(),
            replies=(StockReserved, StockReleased, StockConfirmed),
        ),
        "payment": Contract.of(
            commands=PAYMENT_COMMANDS.values(), replies=(PaymentCharged, PaymentRefunded)
        ),
        "order": Contract.of(
            commands=ORDER_COMMANDS.values(), replies=(OrderCreated, OrderCancelled)
        ),
    }
)
