"""The overview (/console): the last hour's sagas by outcome, what runs and what failed,
the dead-letter depth; each figure links to the list it counts."""

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from saga.console.dead_letters import UNREACHABLE
from saga.console.guard import SessionDep
from saga.console.listing import STATUSES
from saga.console.rendering import page
from saga.deadletters import DeadLetterQueue
from saga.store import RedisSagaStore

router = APIRouter(prefix="/console")
HOUR = timedelta(hours=1)


@router.get("", response_class=HTMLResponse)
async def overview(request: Request, session: SessionDep) -> Response:
    """The figures of the last hour (a customer's: of their own sagas)."""
    store: RedisSagaStore = request.app.state.store
    now = datetime.now(UTC)
    customer = None if session.caller.is_admin else session.email
    states = await store.recent(since=time.time() - HOUR.total_seconds(), customer=customer)
    by_status = Counter(s.status for s in states)
    depth: int | str | None = None
    queue: DeadLetterQueue | None = request.app.state.dead_letters
    if session.caller.is_admin and queue is not None:
        try:
            depth = await queue.depth()
        except UNREACHABLE as exc:
            depth = f"unknown ({type(exc).__name__})"
    return page(
        request,
        "overview.html",
        session=session,
        counts=[(status, by_status.get(status, 0)) for status in STATUSES],
        total=len(states),
        depth=depth,
        since=now - HOUR,
    )
