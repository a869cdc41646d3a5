"""The shop's route on the front door: `POST /orders/create_order` starts an order saga."""

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, EmailStr, Field

from contracts.money import money
from saga.api.deps import LimitedCaller, registry_of
from saga.api.media import JsonBodyRoute, WrittenNumber
from saga.api.schemas import SagaAccepted, errors
from saga.api.starting import IdempotencyKey, start_saga
from services.messages import MAX_ITEMS, OrderItem, PaymentMethod, ProductId, Quantity
from services.orders import OrderInput


def _price(value: Any) -> Decimal:
    # A JSON number is judged as it was written (12.5 is "12.5", 1e2 has an exponent),
    # so a client sending numbers is served exactly and refused as a string would be;
    # money is never a float.
    return money(value.written if isinstance(value, WrittenNumber) else value)


Price = Annotated[Decimal, BeforeValidator(_price)]


class ItemRequest(BaseModel):
    product_id: ProductId
    quantity: Quantity
    unit_price: Price | None = None


class CreateOrderRequest(BaseModel):
    """The seed's create-order body; the customer is always the token's owner."""

    model_config = ConfigDict(str_strip_whitespace=True)

    user_email: EmailStr | None = None
    vendor_email: EmailStr
    delivery_address: str = Field(min_length=1, max_length=500)
    description: str | None = Field(default=None, max_length=2000)
    items: list[ItemRequest] = Field(min_length=1, max_length=MAX_ITEMS)
    payment_method: PaymentMethod


router = APIRouter(route_class=JsonBodyRoute, tags=["shop"])


@router.post(
    "/orders/create_order",
    status_code=202,
    response_model=SagaAccepted,
    responses={
        200: {"model": SagaAccepted, "description": "seen before: the same saga"},
        **errors(401, 403, 413, 415, 422, 429, 503),
    },
)
async def create_order(
    body: CreateOrderRequest,
    caller: LimitedCaller,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> SagaAccepted:
    """Start an order saga; answers once its first event and command are durable."""
    if body.user_email is not None and body.user_email.lower() != caller.email:
        raise HTTPException(403, "user_email must be the token owner's email")
    order = OrderInput(
        customer=caller.email,
        vendor=body.vendor_email.lower(),
        delivery_address=body.delivery_address,
        description=body.description,
        items=[
            OrderItem(product_id=i.product_id, quantity=i.quantity, unit_price=i.unit_price)
            for i in body.items
        ],
        payment_method=body.payment_method,
    )
    return await start_saga(
        request,
        response,
        caller,
        await registry_of(request).latest("order"),
        order,
        idempotency_key=idempotency_key,
        body=body.model_dump(mode="json"),
        # The order's input is made of the body's fields (under other names).
        input_at=("body",),
    )
