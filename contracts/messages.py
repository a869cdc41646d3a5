"""Every command and reply as a pydantic model, with registries by wire type name."""

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.email import Email
from contracts.money import Money

PaymentMethod = Literal["Credit Card", "Debit Card", "Cash on Delivery"]
ProductId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
MAX_QUANTITY: Final = 1_000_000
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY)]
MAX_ITEMS: Final = 100


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


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


# --- any participant ---------------------------------------------------------------


class CommandFailed(Message):
    """The participant did not do the command: nothing of it took effect, unless
    `effect_unknown` says the participant cannot tell.

    `reason` is a stable machine-readable word (`insufficient_stock`, `unknown_vendor`, ...).
    """

    reason: str = Field(min_length=1, max_length=64)
    detail: str | None = Field(default=None, max_length=1000)
    # True: trying again later may work (the participant's dependency was away).
    # False: a business answer that will not change.
    transient: bool = False
    # True: the participant cannot tell whether the command took effect (an HTTP call
    # that timed out): if the saga gives the step up, it is compensated to be sure.
    effect_unknown: bool = False


COMMANDS: Final[dict[str, type[Message]]] = {
    m.__name__: m
    for m in (
        ReserveStock,
        ReleaseStock,
        ConfirmStock,
        ChargePayment,
        RefundPayment,
        CreateOrder,
        CancelOrder,
    )
}

REPLIES: Final[dict[str, type[Message]]] = {
    m.__name__: m
    for m in (
        StockReserved,
        StockReleased,
        StockConfirmed,
        PaymentCharged,
        PaymentRefunded,
        OrderCreated,
        OrderCancelled,
        CommandFailed,
    )
}
