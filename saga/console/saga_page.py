"""One saga's page: its header, timeline, event history and messages, kept live; the
operator's actions on it (cancel, replay with a preview first)."""

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from saga import operations
from saga.api.deps import plausible_id, registry_of
from saga.console.guard import ConsoleProblem, SessionDep, checked_form
from saga.console.messages import exchanges
from saga.console.rendering import fragment, page
from saga.console.sessions import Session
from saga.console.timeline_chart import duration_words, timeline_chart
from saga.core.decide import cancellable
from saga.core.definition import SagaDefinition
from saga.core.state import SagaState
from saga.orchestrator import Orchestrator
from saga.store import RedisSagaStore
from saga.timeline import timeline

router = APIRouter(prefix="/console")


async def visible(request: Request, session: Session, saga_id: str) -> SagaState:
    """The saga, if the session may see it; someone else's is as missing as a missing one."""
    store: RedisSagaStore = request.app.state.store
    state = await store.load(saga_id) if plausible_id(saga_id) else None
    if state is None or not (session.caller.is_admin or state.customer == session.email):
        raise ConsoleProblem(404, f"no saga {saga_id}")
    return state


async def _definition(request: Request, state: SagaState) -> SagaDefinition | None:
    return await registry_of(request).get(state.saga_type, state.definition_version)


async def _saga_context(request: Request, session: Session, state: SagaState) -> dict[str, Any]:
    store: RedisSagaStore = request.app.state.store
    records = await store.events(state.saga_id)
    definition = await _definition(request, state)
    now = datetime.now(UTC)
    sent, ignored = exchanges(records)
    may_cancel = (
        definition is not None
        and cancellable(definition, state)
        and (session.caller.is_admin or state.customer == session.email)
    )
    return {
        "session": session,
        "state": state,
        "ended": state.updated_at if state.terminal else None,
        "duration": duration_words(
            (state.updated_at if state.terminal else now) - state.created_at
        ),
        "chart": timeline_chart(records, now),
        "rows": timeline(records),
        "records": [(r, r.to_wire()["data"]) for r in records],
        "exchanges": sent,
        "ignored": ignored,
        "may_cancel": may_cancel,
        "may_replay": state.status == "failed"
        and session.caller.is_admin
        and definition is not None,
    }


@router.get("/sagas/{saga_id}", response_class=HTMLResponse)
async def saga_page(request: Request, session: SessionDep, saga_id: str) -> Response:
    """A saga's page."""
    state = await visible(request, session, saga_id)
    context = await _saga_context(request, session, state)
    return page(request, "saga.html", **context)


@router.get("/sagas/{saga_id}/live")
async def saga_live(request: Request, session: SessionDep, saga_id: str) -> JSONResponse:
    """The saga's section as it is now, its version, and whether it has ended (`final`)."""
    state = await visible(request, session, saga_id)
    context = await _saga_context(request, session, state)
    return JSONResponse(
        {
            "version": state.version,
            "final": state.terminal,
            "html": fragment("_saga.html", **context),
        }
    )


@router.post("/sagas/{saga_id}/cancel")
async def cancel_saga(request: Request, session: SessionDep, saga_id: str) -> Response:
    """Cancel a running saga (its owner or an admin); recorded with who asked."""
    await checked_form(request, session)
    state = await visible(request, session, saga_id)
    orchestrator: Orchestrator = request.app.state.orchestrator
    try:
        await operations.cancel(
            orchestrator, await _definition(request, state), state, by=session.email
        )
    except operations.NotCancellable as exc:
        raise ConsoleProblem(409, str(exc)) from None
    return RedirectResponse(f"/console/sagas/{saga_id}", status_code=303)


async def _failed(
    request: Request, session: Session, saga_id: str
) -> tuple[SagaState, SagaDefinition]:
    if not session.caller.is_admin:
        raise ConsoleProblem(404, "no such page")
    state = await visible(request, session, saga_id)
    definition = await _definition(request, state)
    if definition is None:
        raise ConsoleProblem(
            409, f"no saga definition {state.saga_type} v{state.definition_version}"
        )
    if state.status != "failed":
        raise ConsoleProblem(
            409, f"saga {saga_id} is {state.status}, not failed: nothing to replay"
        )
    return state, definition


@router.get("/sagas/{saga_id}/replay", response_class=HTMLResponse)
async def replay_preview(request: Request, session: SessionDep, saga_id: str) -> Response:
    """What replaying the failed saga would send (changing nothing), and the form to do it."""
    state, definition = await _failed(request, session, saga_id)
    preview = operations.replay_preview(definition, state, by=session.email)
    return page(request, "replay.html", session=session, state=state, preview=preview)


@router.post("/sagas/{saga_id}/replay")
async def replay_saga(request: Request, session: SessionDep, saga_id: str) -> Response:
    """Replay the failed saga as previewed (at the version previewed); recorded with who."""
    form = await checked_form(request, session)
    state, definition = await _failed(request, session, saga_id)
    if form.get("version") != str(state.version):
        raise ConsoleProblem(
            409, f"saga {saga_id} changed since the preview: look at the preview again"
        )
    orchestrator: Orchestrator = request.app.state.orchestrator
    result = await operations.replay(orchestrator, definition, state, by=session.email)
    if result["outcome"] != "replayed":
        raise ConsoleProblem(409, f"saga {saga_id} was replayed by someone else meanwhile")
    return RedirectResponse(f"/console/sagas/{saga_id}", status_code=303)
