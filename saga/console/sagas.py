"""The sagas list, newest first, paged by a cursor, filtered, and kept live."""

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from saga.console.guard import SessionDep
from saga.console.listing import PAGE_SIZE, STATUSES, ListFilter, cursor
from saga.console.rendering import fragment, page
from saga.console.rows import saga_row
from saga.store import Position, RedisSagaStore

router = APIRouter(prefix="/console")
# A live list updates at most this many of the rows it shows.
MAX_LIVE_ROWS = 200


async def list_filter(
    session: SessionDep,
    status: str | None = None,
    saga_type: Annotated[str | None, Query(alias="type")] = None,
    customer: str | None = None,
    failed_step: str | None = None,
) -> ListFilter:
    """FastAPI dependency: the list's filters, as the query asks (400 if it cannot)."""
    return ListFilter.of(
        session, status=status, saga_type=saga_type, customer=customer, failed_step=failed_step
    )


FilterDep = Annotated[ListFilter, Depends(list_filter)]


def _store(request: Request) -> RedisSagaStore:
    store: RedisSagaStore = request.app.state.store
    return store


@router.get("/sagas", response_class=HTMLResponse)
async def sagas_page(
    request: Request,
    session: SessionDep,
    wanted: FilterDep,
    before: Annotated[str | None, Query()] = None,
) -> Response:
    """One page of sagas, the filters applied."""
    store = _store(request)
    start = cursor(before)
    found = await store.page(wanted.keep, index=wanted.index(), before=start, limit=PAGE_SIZE)
    now = datetime.now(UTC)
    # A first page takes the sagas started after its newest (after the dawn of time if
    # it has none); a later one stays as it is.
    newest = found.sagas[0][0] if found.sagas else Position(0.0, "-")
    top = newest.text() if start is None else None
    return page(
        request,
        "sagas.html",
        session=session,
        rows=[saga_row(state, now) for _, state in found.sagas],
        wanted=wanted,
        statuses=STATUSES,
        first_page=start is None,
        top=top,
        next_query=wanted.query(before=found.next) if found.next else None,
        live_query=wanted.query(),
    )


@router.get("/sagas/live")
async def sagas_live(
    request: Request,
    wanted: FilterDep,
    top: Annotated[str | None, Query()] = None,
    ids: Annotated[str, Query(max_length=MAX_LIVE_ROWS * 130)] = "",
) -> JSONResponse:
    """What changed for a list on screen: its rows as they are now (`rows`), those that
    no longer pass its filters (`gone`), and, for a first page (`top` given), the sagas
    started since its newest (`new`, newest first) and its new `top`."""
    store = _store(request)
    now = datetime.now(UTC)
    shown = [i for i in ids.split(",") if i][:MAX_LIVE_ROWS]
    states = {s.saga_id: s for s in await store.load_many(shown)}
    body: dict[str, Any] = {"rows": [], "gone": [], "new": [], "top": top}
    for saga_id in shown:
        state = states.get(saga_id)
        if state is None or not wanted.keep(state):
            body["gone"].append(saga_id)
        else:
            html = fragment("_row.html", row=saga_row(state, now))
            body["rows"].append({"id": saga_id, "status": state.status, "html": html})
    after = cursor(top)
    if after is not None:
        newer = await store.newer(wanted.keep, index=wanted.index(), after=after, limit=PAGE_SIZE)
        body["new"] = [
            {"id": s.saga_id, "html": fragment("_row.html", row=saga_row(s, now))} for _, s in newer
        ]
        if newer:
            body["top"] = newer[0][0].text()
    return JSONResponse(body)
