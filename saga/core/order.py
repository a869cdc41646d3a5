"""The order saga: reserve stock, take payment, create the order, confirm the sale."""

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from contracts.email import Email
from contracts.messages import (
    MAX_ITEMS,
    CancelOrder,
    ChargePayment,
    ConfirmStock,
    CreateOrder,
    OrderCancelled,
    OrderCreated,
    OrderItem,
    PaymentCharged,
    PaymentMethod,
    PaymentRefunded,
    RefundPayment,
    ReleaseStock,
    ReserveStock,
    StockConfirmed,
    StockReleased,
    StockReserved,
)
from saga.core.definition import SagaDefinition, StepDefinition
from saga.core.state import SagaState


class OrderInput(BaseModel):
    """What the order saga needs to start; the customer is the caller's verified identity."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer: Email
    vendor: Email
    delivery_address: str = Field(min_length=1, max_length=500)
    description: str | None = Field(default=None, max_length=2000)
    items: list[OrderItem] = Field(min_length=1, max_length=MAX_ITEMS)
    payment_method: PaymentMethod


def _input(state: SagaState) -> OrderInput:
    return OrderInput.model_validate(state.input)


def _reservation(state: SagaState) -> StockReserved:
    return StockReserved.model_validate(state.results["reserve_stock"])


def _reserve(state: SagaState) -> ReserveStock:
    return ReserveStock(items=_input(state).items)


def _product_ids(state: SagaState) -> list[str]:
    return list(dict.fromkeys(item.product_id for item in _input(state).items))


def _charge(state: SagaState) -> ChargePayment:
    return ChargePayment(customer=_input(state).customer, amount=_reservation(state).amount)


def _refund(state: SagaState) -> RefundPayment:
    return RefundPayment(customer=_input(state).customer)


def _create_order(state: SagaState) -> CreateOrder:
    order, reservation = _input(state), _reservation(state)
    return CreateOrder(
        customer=order.customer,
        vendor=order.vendor,
        items=reservation.items,
        amount=reservation.amount,
        delivery_address=order.delivery_address,
        description=order.description,
        payment_method=order.payment_method,
    )


def _paid_now(state: SagaState) -> bool:
    return _input(state).payment_method != "Cash on Delivery"


def summarize_order(state: SagaState) -> Mapping[str, Any]:
    """The order's id (once it exists) and amount (once stock priced it)."""
    created = state.results.get("create_order")
    reserved = state.results.get("reserve_stock")
    return {
        "order_id": created["order_id"] if created else None,
        "amount": f"{Decimal(reserved['amount']):.2f}" if reserved else None,
    }


ORDER_SAGA = SagaDefinition(
    name="order",
    version=1,
    input_model=OrderInput,
    steps=(
        StepDefinition(
            name="reserve_stock",
            participant="stock",
            command=_reserve,
            success=StockReserved,
            compensation=lambda state: ReleaseStock(product_ids=_product_ids(state)),
            compensated=StockReleased,
        ),
        StepDefinition(
            name="take_payment",
            participant="payment",
            command=_charge,
            success=PaymentCharged,
            compensation=_refund,
            compensated=PaymentRefunded,
            condition=_paid_now,
        ),
        StepDefinition(
            name="create_order",
            participant="order",
            command=_create_order,
            success=OrderCreated,
            compensation=lambda _: CancelOrder(),
            compensated=OrderCancelled,
        ),
        # After the pivot: once the order exists, the reservation becomes a sale.
        StepDefinition(
            name="confirm_stock",
            participant="stock",
            command=lambda state: ConfirmStock(product_ids=_product_ids(state)),
            success=StockConfirmed,
        ),
    ),
    summarize=summarize_order,
)
