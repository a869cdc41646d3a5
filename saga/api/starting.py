"""Starting a saga over HTTP, the same for every route that starts one: the caller's
Idempotency-Key claimed for this body, the start durable before the answer, 202 (200
for a key seen before) with the saga's link and a traceparent."""

from typing import Annotated, Any

from fastapi import Header, HTTPException, Request, Response

from contracts.envelope import trace_id_of, traceparent
from saga import tracing
from saga.api.auth import Caller
from saga.api.idempotency import MAX_KEY_LENGTH, IdempotencyKeys, KeyReused
from saga.api.schemas import SagaAccepted, SagaLinks, unprocessable
from saga.clock import new_id
from saga.core.definition import InputError, SagaDefinition
from saga.core.problems import Problem
from saga.handling import INFRASTRUCTURE_ERRORS
from saga.orchestrator import SagaStarter
from saga.store import NoSuchDefinition

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        pattern=r"^[\x21-\x7e]+$",
        description="The same key with the same body starts one saga, "
        "answered 202 the first time and 200 after, for 24 hours.",
    ),
]


async def start_saga(
    request: Request,
    response: Response,
    caller: Caller,
    definition: SagaDefinition,
    saga_input: Any,
    *,
    idempotency_key: str | None,
    body: dict[str, Any],
    input_at: tuple[str, ...],
) -> SagaAccepted:
    """Start a saga for the caller; `body` is what the key is claimed for, `input_at`
    where the saga's input is in the request (for the places of its problems)."""
    saga_id: str | None = None
    if idempotency_key is not None:
        keys: IdempotencyKeys = request.app.state.keys
        try:
            claim = await keys.claim(caller.email, idempotency_key, body)
        except KeyReused as exc:
            raise unprocessable([Problem((), str(exc))], "header", "Idempotency-Key") from None
        saga_id = claim.saga_id
        if not claim.first:
            response.status_code = 200
    starter: SagaStarter = request.app.state.starter
    # The request's span's trace when traced (it continues the caller's), else the caller's.
    trace_id = (
        tracing.current_trace_id() or trace_id_of(request.headers.get("traceparent")) or new_id()
    )
    try:
        state = await starter.start(
            definition,
            customer=caller.email,
            saga_input=saga_input,
            trace_id=trace_id,
            saga_id=saga_id,
        )
    except InputError as exc:
        raise unprocessable(exc.problems, *input_at) from None
    except NoSuchDefinition as exc:  # deleted between the lookup and the start
        raise HTTPException(404, str(exc)) from None
    except INFRASTRUCTURE_ERRORS as exc:
        raise HTTPException(503, f"saga store unavailable: {type(exc).__name__}") from exc
    link = f"/sagas/{state.saga_id}"
    response.headers["Location"] = link
    response.headers["traceparent"] = traceparent(trace_id, new_id()[:16])
    return SagaAccepted(saga_id=state.saga_id, status=state.status, links=SagaLinks(self=link))
