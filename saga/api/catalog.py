"""Saga types over HTTP: register definitions (admins), list them, start any saga type."""

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from saga.api.deps import CallerDep, LimitedCaller, registry_of
from saga.api.media import JsonBodyRoute
from saga.api.schemas import SagaAccepted, errors, unprocessable
from saga.api.starting import IdempotencyKey, start_saga
from saga.core.definition import InputError
from saga.core.document import DefinitionError, DefinitionSpec, read_definition
from saga.core.problems import Problem
from saga.handling import INFRASTRUCTURE_ERRORS
from saga.registry import DefinitionConflict
from saga.store import NoSuchDefinition
from saga.transport import Transport
from saga.views import DefinitionEntry, definition_entries

router = APIRouter(route_class=JsonBodyRoute)


class Applied(BaseModel):
    name: str
    version: int
    outcome: str


class StartSaga(BaseModel):
    """A saga of any registered type, on its latest version."""

    type: str = Field(min_length=1, max_length=64)
    input: dict[str, Any]


def may_start(spec: DefinitionSpec, roles: tuple[str, ...]) -> bool:
    """Admins may start any saga; others those whose definition names one of their roles."""
    return "admin" in roles or bool(set(spec.roles) & set(roles))


@router.post(
    "/definitions",
    status_code=201,
    response_model=Applied,
    responses={
        200: {"model": Applied, "description": "that version exists with this content"},
        **errors(401, 403, 409, 413, 415, 422, 503),
    },
)
async def apply_definition(
    document: dict[str, Any], caller: LimitedCaller, request: Request, response: Response
) -> Applied:
    """Register a definition document as a new version (admins only)."""
    if not caller.is_admin:
        raise HTTPException(403, "only admins register saga definitions")
    try:
        spec = read_definition(document)
        outcome = await registry_of(request).apply(spec)
    except DefinitionError as exc:
        raise unprocessable(exc.problems or [Problem((), exc.heading)], "body") from None
    except DefinitionConflict as exc:
        raise HTTPException(409, str(exc)) from None
    transport: Transport = request.app.state.transport
    with contextlib.suppress(*INFRASTRUCTURE_ERRORS):  # else declared once it reconnects
        await transport.declare_participants(spec.named_participants())
    if outcome == "unchanged":
        response.status_code = 200
    return Applied(name=spec.name, version=spec.version, outcome=outcome)


@router.get("/definitions", response_model=list[DefinitionEntry], responses=errors(401, 503))
async def list_definitions(caller: CallerDep, request: Request) -> list[DefinitionEntry]:
    """Every saga type, its versions, and whether the caller may start it."""
    return await definition_entries(
        registry_of(request), may_start=lambda spec: may_start(spec, caller.roles)
    )


@router.get("/definitions/{name}", response_model=DefinitionSpec, responses=errors(401, 404, 503))
async def get_definition(
    name: str,
    caller: CallerDep,
    request: Request,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> DefinitionSpec:
    """A definition version's document (default: the latest)."""
    registry = registry_of(request)
    if version is None:
        entry = await registry.entry(name)
        if entry is None:
            raise HTTPException(404, f"no saga definition {name}")
        version = entry.latest
    spec = await registry.document(name, version)
    if spec is None:
        raise HTTPException(404, f"no saga definition {name} version {version}")
    # Where its HTTP participants live is the operators' business, not the customers'.
    return spec if caller.is_admin else spec.model_copy(update={"participants": {}})


@router.post(
    "/sagas",
    status_code=202,
    response_model=SagaAccepted,
    responses={
        200: {"model": SagaAccepted, "description": "seen before: the same saga"},
        **errors(401, 403, 404, 413, 415, 422, 429, 503),
    },
)
async def start_any(
    body: StartSaga,
    caller: LimitedCaller,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> SagaAccepted:
    """Start a saga of any type the caller may start; the caller is its customer."""
    registry = registry_of(request)
    try:
        definition = await registry.latest(body.type)
    except NoSuchDefinition as exc:
        raise HTTPException(404, str(exc)) from None
    spec = await registry.document(definition.name, definition.version)
    if spec is None or not may_start(spec, caller.roles):
        raise HTTPException(403, f"this caller may not start {body.type} sagas")
    try:
        checked = definition.checked(body.input)  # before a key is claimed for it
    except InputError as exc:
        raise unprocessable(exc.problems, "body", "input") from None
    return await start_saga(
        request,
        response,
        caller,
        definition,
        checked,  # not checked again by the start
        idempotency_key=idempotency_key,
        body=body.model_dump(mode="json"),
        input_at=("body", "input"),
    )
