"""The front door's request and response bodies."""

from collections.abc import Sequence
from typing import Any

from fastapi import HTTPException
from pydantic import BaseModel

from saga.core import problems as found
from saga.core.state import SagaStatus


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
