"""The console mounted on the front door: its routes, static files, headers and problems."""

from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from saga.console import dead_letters, definitions, login, overview, saga_page, sagas
from saga.console.guard import ConsoleHeaders, ConsoleProblem, SignInNeeded, sign_in_url
from saga.console.rendering import page

STATIC = Path(__file__).parent / "static"


def mount_console(app: FastAPI) -> None:
    """Serve the console under /console on `app` (its state gives the store, the auth
    client and the console's sessions)."""
    app.add_middleware(ConsoleHeaders)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    for module in (login, overview, sagas, saga_page, dead_letters, definitions):
        app.include_router(module.router, include_in_schema=False)

    @app.api_route("/console/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
    async def no_such_page(rest: str) -> Response:
        """Any other path under /console: a page saying so, not the API's JSON."""
        raise ConsoleProblem(404, f"no page /console/{rest}")

    @app.exception_handler(ConsoleProblem)
    async def problem(request: Request, exc: ConsoleProblem) -> Response:
        return page(request, "problem.html", session=None, status=exc.status, reason=exc.reason)

    @app.exception_handler(SignInNeeded)
    async def sign_in(_: Request, exc: SignInNeeded) -> Response:
        return RedirectResponse(sign_in_url(exc.then), status_code=303)
