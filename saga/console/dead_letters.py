"""The dead-letters page (admins only): parked messages with a safe preview; replay one,
replay all, purge after a confirmation."""

from typing import Annotated, Final
from urllib.parse import quote

import aiormq
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from saga.console.guard import AdminDep, ConsoleProblem, checked_form
from saga.console.rendering import page
from saga.deadletters import (
    DeadLetterQueue,
    DeadLetterQueueMissing,
    ReplayInterrupted,
    ReplayRunning,
)
from saga.safetext import printable

router = APIRouter(prefix="/console")
# The page lists at most this many; a preview shows this many bytes of a body.
SHOWN: Final = 200
PREVIEW: Final = 300
# What stands between the page and the parked messages: said on the page, not raised.
UNREACHABLE: Final = (
    DeadLetterQueueMissing,
    ReplayRunning,
    ReplayInterrupted,
    aiormq.exceptions.AMQPError,
    OSError,
    TimeoutError,
)


def _queue(request: Request) -> DeadLetterQueue:
    queue: DeadLetterQueue | None = request.app.state.dead_letters
    if queue is None:
        raise ConsoleProblem(404, "no dead letters here: this system runs without RabbitMQ")
    return queue


def _back(said: str) -> Response:
    return RedirectResponse(f"/console/dead-letters?done={quote(said)}", status_code=303)


@router.get("/dead-letters", response_class=HTMLResponse)
async def dead_letters(
    request: Request, session: AdminDep, done: Annotated[str | None, Query(max_length=300)] = None
) -> Response:
    """The parked messages, each with its queue, reason, time and the start of its body."""
    letters, problem = [], None
    try:
        letters = await _queue(request).peek(limit=SHOWN)
    except UNREACHABLE as exc:
        problem = f"the dead letters cannot be read now: {exc or type(exc).__name__}"
    shown = [
        (letter, printable(letter.preview, limit=PREVIEW) if letter.size else "(empty)")
        for letter in letters
    ]
    return page(
        request, "dead_letters.html", session=session, letters=shown, problem=problem, done=done
    )


@router.post("/dead-letters/replay")
async def replay(request: Request, session: AdminDep) -> Response:
    """Send one parked message (`id`), or all of them (`all`), back to its queue."""
    form = await checked_form(request, session)
    letter_id, every = form.get("id"), form.get("all") == "yes"
    if not letter_id and not every:
        raise ConsoleProblem(400, "name one dead letter (id), or all of them (all=yes)")
    try:
        done = await _queue(request).replay(lambda letter: every or letter.id == letter_id)
    except UNREACHABLE as exc:
        raise ConsoleProblem(503, f"not replayed: {exc or type(exc).__name__}") from None
    if letter_id and not every and not done.sent and not done.refused:
        raise ConsoleProblem(404, f"no dead letter {letter_id}")
    said = f"{len(done.sent)} message(s) sent back"
    if done.refused:
        said += "; " + "; ".join(f"{letter.id} stays parked: {why}" for letter, why in done.refused)
    return _back(said)


@router.get("/dead-letters/purge", response_class=HTMLResponse)
async def purge_confirmation(request: Request, session: AdminDep) -> Response:
    """Ask before dropping every parked message."""
    try:
        parked = await _queue(request).depth()
    except UNREACHABLE as exc:
        raise ConsoleProblem(503, f"the dead letters cannot be read now: {exc}") from None
    return page(request, "purge.html", session=session, parked=parked)


@router.post("/dead-letters/purge")
async def purge(request: Request, session: AdminDep) -> Response:
    """Drop every parked message, once confirmed (`confirm=yes`)."""
    form = await checked_form(request, session)
    if form.get("confirm") != "yes":
        raise ConsoleProblem(400, "purging drops the messages for good: confirm it first")
    try:
        count = await _queue(request).purge()
    except UNREACHABLE as exc:
        raise ConsoleProblem(503, f"not purged: {exc or type(exc).__name__}") from None
    return _back(f"{count} message(s) purged")
