"""The definitions pages: each saga type with its versions, which is latest and how many
sagas run on each; a version's steps drawn and its document shown."""

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from saga.api.catalog import may_start
from saga.api.deps import registry_of
from saga.console.diagram import definition_diagram
from saga.console.guard import ConsoleProblem, SessionDep
from saga.console.rendering import page
from saga.core.document import DefinitionError
from saga.store import RedisSagaStore
from saga.views import definition_entries

router = APIRouter(prefix="/console")


@router.get("/definitions", response_class=HTMLResponse)
async def definitions(request: Request, session: SessionDep) -> Response:
    """Every saga type, its versions and the sagas running on each."""
    store: RedisSagaStore = request.app.state.store
    entries = await definition_entries(
        registry_of(request), may_start=lambda spec: may_start(spec, session.roles)
    )
    counts = {(e.name, v): await store.on_version(e.name, v) for e in entries for v in e.versions}
    return page(request, "definitions.html", session=session, entries=entries, counts=counts)


@router.get("/definitions/{name}/{version}", response_class=HTMLResponse)
async def definition(request: Request, session: SessionDep, name: str, version: int) -> Response:
    """One version of a saga type: its steps by stage, and its document."""
    registry = registry_of(request)
    try:
        spec = await registry.document(name, version)
        compiled = await registry.get(name, version) if spec is not None else None
    except DefinitionError as exc:
        raise ConsoleProblem(500, f"{name} version {version} cannot be read: {exc}") from None
    if spec is None or compiled is None:
        raise ConsoleProblem(404, f"no saga definition {name} version {version}")
    entry = await registry.entry(name)
    store: RedisSagaStore = request.app.state.store
    return page(
        request,
        "definition.html",
        session=session,
        spec=spec,
        diagram=definition_diagram(compiled, spec),
        latest=entry.latest if entry else version,
        running=await store.on_version(name, version),
        document=spec.model_dump(mode="json", exclude_none=True),
    )
