"""The overview (/console): the last hour's sagas per minute by how they ended, their
durations, what runs, what failed and where, the dead-letter depth; each figure links to
the list it counts."""

import time
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from saga.console.dead_letters import UNREACHABLE
from saga.console.figures import MINUTES, SagaOutcome, overview_figures
from saga.console.guard import SessionDep
from saga.console.rendering import page
from saga.core.state import SagaState
from saga.deadletters import DeadLetterQueue
from saga.store import RedisSagaStore

router = APIRouter(prefix="/console")


def outcome(state: SagaState) -> SagaOutcome:
    """A saga as the overview's figures count it."""
    return SagaOutcome(
        saga_id=state.saga_id,
        saga_type=state.saga_type,
        status=state.status,
        started=state.created_at,
        ended=state.updated_at if state.terminal else None,
        failed_step=state.failed_step,
    )


@router.get("", response_class=HTMLResponse)
async def overview(request: Request, session: SessionDep) -> Response:
    """The figures of the last hour (a customer's: of their own sagas)."""
    store: RedisSagaStore = request.app.state.store
    customer = None if session.caller.is_admin else session.email
    # The sagas started or ended in the hour the figures cover, and those running.
    since = time.time() - (MINUTES + 1) * 60
    states = await store.recent(since=since, customer=customer)
    figures = overview_figures([outcome(s) for s in states], datetime.now(UTC))
    depth: int | str | None = None
    queue: DeadLetterQueue | None = request.app.state.dead_letters
    if session.caller.is_admin and queue is not None:
        try:
            depth = await queue.depth()
        except UNREACHABLE as exc:
            depth = f"unknown ({type(exc).__name__})"
    return page(request, "overview.html", session=session, figures=figures, depth=depth)
