"""The front door's request and response bodies."""

from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Any

from fastapi import HTTPException
from pydantic import BaseModel, BeforeValidator, ConfigDict, EmailStr, Field

from contracts.money import money
from saga.api.media import WrittenNumber
from saga.core import problems as found
from saga.core.state import SagaStatus
from services.messages import MAX_ITEMS, PaymentMethod, ProductId, Quantity


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


class SagaLinks(BaseModel):
    self: str


class SagaAccepted(BaseModel):
    saga_id: str
    status: SagaStatus
    links: SagaLinks


class Problem(BaseModel):
    """Every error answer: what went wrong, in words (or, for 422, field by field)."""

    detail: str | list[dict[str, Any]]


def unprocessable(problems: Sequence[found.Problem], *where: str) -> HTTPException:
    """A 422 whose `detail` lists every problem with its place, as FastAPI lists a body's
    bad fields; `where` is the place of what the problems are in (`"body", "input"`)."""
    return HTTPException(422, [p.as_detail(*where) for p in problems])


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error codes a route may answer."""
    words = {
        401: "no valid bearer token",
        403: "not allowed for this caller",
        404: "no such saga (or not the caller's)",
        409: "the saga is past the point where this can be done",
        413: "the body is too large",
        415: "the body is not JSON: Content-Type must be application/json",
        422: "the request is not valid; `detail` lists each problem with its place",
        429: "too many requests from this customer; see Retry-After",
        503: "the auth service or the saga store is unreachable; see Retry-After",
    }
    return {code: {"model": Problem, "description": words[code]} for code in codes}
