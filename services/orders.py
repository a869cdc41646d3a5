"""The order saga's input as the shop's route takes it (the saga itself is a document:
`services/definitions/order.yaml`, whose input schema says the same)."""

from pydantic import BaseModel, ConfigDict, Field

from contracts.email import Email
from services.messages import (
    MAX_ITEMS,
    OrderItem,
    PaymentMethod,
)


class OrderInput(BaseModel):
    """What the order saga needs to start; the customer is the caller's verified identity."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer: Email
    vendor: Email
    delivery_address: str = Field(min_length=1, max_length=500)
    description: str | None = Field(default=None, max_length=2000)
    items: list[OrderItem] = Field(min_length=1, max_length=MAX_ITEMS)
    payment_method: PaymentMethod
