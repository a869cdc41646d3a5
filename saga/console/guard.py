"""What every console page stands behind: the signed-in session, CSRF on every form that
changes something, security headers on every response, problems shown as pages."""

import hmac
from typing import Annotated, Final
from urllib.parse import parse_qs, quote

from fastapi import Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from saga.api.auth import AuthClient, AuthUnavailable
from saga.console.sessions import COOKIE, Session, SessionStore

# No inline script or style, nothing from another origin, no framing, forms post home.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
_HEADERS: Final = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
# A form's body is small: a few ids and a token.
MAX_FORM_FIELDS: Final = 20


class ConsoleHeaders:
    """ASGI middleware: every response under /console carries the security headers."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/console"):
            await self._app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in _HEADERS}
                kept = [(n, v) for n, v in message.get("headers", []) if n.lower() not in names]
                message = {**message, "headers": [*kept, *_HEADERS]}
            await send(message)

        await self._app(scope, receive, with_headers)


class ConsoleProblem(Exception):
    """A request the console refuses or cannot serve: shown as a page with its reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class SignInNeeded(Exception):
    """No session, or its token no longer holds: the user is sent to sign in."""

    def __init__(self, then: str) -> None:
        super().__init__(then)
        self.then = then


def sign_in_url(then: str) -> str:
    """The sign-in page, coming back to `then` (a path of the console) afterwards."""
    return f"/console/login?next={quote(then, safe='/')}"


def sessions_of(request: Request) -> SessionStore:
    """The app's console sessions."""
    sessions: SessionStore = request.app.state.console_sessions
    return sessions


async def signed_in(request: Request) -> Session:
    """FastAPI dependency: the session of the request's cookie, its token still valid."""
    then = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    cookie = request.cookies.get(COOKIE)
    session = await sessions_of(request).get(cookie) if cookie else None
    if session is None:
        raise SignInNeeded(then)
    auth: AuthClient = request.app.state.auth
    try:
        caller = await auth.verify(session.token)
    except AuthUnavailable as exc:
        raise ConsoleProblem(503, str(exc)) from None
    if caller is None:  # expired or revoked since
        await sessions_of(request).close(session.session_id)
        raise SignInNeeded(then)
    return session


SessionDep = Annotated[Session, Depends(signed_in)]


async def admin(session: SessionDep) -> Session:
    """FastAPI dependency: the session of an admin; anyone else finds no such page."""
    if not session.caller.is_admin:
        raise ConsoleProblem(404, "no such page")
    return session


AdminDep = Annotated[Session, Depends(admin)]


async def read_form(request: Request) -> dict[str, str]:
    """A form's fields (the first value of each), as browsers post them (urlencoded)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not media and not await request.body():
        return {}  # a form with no fields at all
    if media != "application/x-www-form-urlencoded":
        raise ConsoleProblem(415, "a console form is posted as application/x-www-form-urlencoded")
    try:
        text = (await request.body()).decode()
        fields = parse_qs(text, max_num_fields=MAX_FORM_FIELDS, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise ConsoleProblem(400, "the form could not be read") from None
    return {name: values[0] for name, values in fields.items()}


async def checked_form(request: Request, session: Session) -> dict[str, str]:
    """A form's fields, once its CSRF token is the session's (403 with the reason if not)."""
    form = await read_form(request)
    token = form.get("csrf_token")
    if not token:
        raise ConsoleProblem(403, "refused: the form carries no CSRF token (csrf_token)")
    if not hmac.compare_digest(token.encode(), session.csrf.encode()):
        raise ConsoleProblem(
            403, "refused: the form's CSRF token is not this session's; reload the page"
        )
    return form
