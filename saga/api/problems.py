"""422 answers that say where each problem is and what is wrong, never what was sent."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


def problem_of(error: dict[str, Any]) -> dict[str, Any]:
    """A validation error as an answer lists it: its place, message and type. FastAPI's
    own answer adds `input` (the value sent: a password, a token, or for a missing field
    the whole object around it) and `ctx` (which may quote it)."""
    msg = str(error.get("msg", ""))
    if error.get("type") == "json_invalid":  # the parser's reason quotes no input
        reason = (error.get("ctx") or {}).get("error")
        msg = f"{msg}: {reason}" if reason else msg
    return {"loc": list(error.get("loc", ())), "msg": msg, "type": error.get("type")}


async def validation_failed(_: Request, exc: Exception) -> JSONResponse:
    """The 422 of a request FastAPI could not validate."""
    assert isinstance(exc, RequestValidationError)
    problems = [problem_of(error) for error in exc.errors()]
    return JSONResponse({"detail": jsonable_encoder(problems)}, status_code=422)


def answer_without_input(app: FastAPI) -> None:
    """Make the app's 422s list problems without the values sent."""
    app.add_exception_handler(RequestValidationError, validation_failed)
