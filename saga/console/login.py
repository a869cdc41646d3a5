"""Signing in to the console and out of it."""

import time
from typing import Annotated

import structlog
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from saga.api.auth import AuthClient, AuthUnavailable
from saga.console.guard import ConsoleProblem, SessionDep, checked_form, read_form, sessions_of
from saga.console.rendering import page
from saga.console.sessions import COOKIE

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/console")


def _then(wanted: str | None) -> str:
    """Where to go after signing in: a console path only, never another site."""
    if wanted and wanted.startswith("/console") and not wanted.startswith("/console/login"):
        return wanted
    return "/console"


@router.get("/login", response_class=HTMLResponse)
async def login_form(
    request: Request, next_path: Annotated[str | None, Query(alias="next")] = None
) -> Response:
    """The sign-in form."""
    return page(request, "login.html", session=None, then=_then(next_path), problem=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the email and password with the auth service; open a session for its token."""
    form = await read_form(request)
    email, password = form.get("email", "").strip(), form.get("password", "")
    then = _then(form.get("next"))
    auth: AuthClient = request.app.state.auth
    try:
        signed_in = await auth.sign_in(email, password) if email and password else None
    except AuthUnavailable as exc:
        raise ConsoleProblem(503, f"cannot sign in now: {exc}") from None
    if signed_in is None:
        return page(
            request,
            "login.html",
            session=None,
            status=401,
            then=then,
            email=email,
            problem="Wrong email or password.",
        )
    session, ttl = await sessions_of(request).open(signed_in, now=time.time())
    response = RedirectResponse(then, status_code=303)
    response.set_cookie(
        COOKIE,
        session.session_id,
        max_age=ttl,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request, session: SessionDep) -> Response:
    """End the session: it is deleted, its token revoked, the cookie cleared."""
    await checked_form(request, session)
    await sessions_of(request).close(session.session_id)
    auth: AuthClient = request.app.state.auth
    try:
        await auth.revoke(session.token)
    except AuthUnavailable as exc:  # signed out all the same; the token expires on its own
        log.warning("token not revoked at sign-out", error=str(exc))
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")
    return response
