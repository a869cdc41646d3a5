"""Request bodies are JSON: a route that takes one refuses any other media type with 415,
and reads each number of the body as it was written."""

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

JSON = "application/json"


class WrittenNumber(float):
    """A JSON number with a fraction or an exponent: a float, which also keeps the text it
    was written as (`1e2`, `12.50`), so that money is judged as written, not as the
    binary float a parser makes of it."""

    __slots__ = ("written",)
    written: str

    def __new__(cls, written: str) -> "WrittenNumber":
        number = super().__new__(cls, written)
        number.written = written
        return number


def read_json(body: bytes) -> Any:
    """A JSON document whose numbers with a fraction or an exponent are WrittenNumbers."""
    return json.loads(body, parse_float=WrittenNumber)


class JsonRequest(Request):
    """A request whose JSON body is read with `read_json`."""

    async def json(self) -> Any:
        """The body as JSON, read once."""
        if not hasattr(self, "_read_json"):
            self._read_json = read_json(await self.body())
        return self._read_json


def is_json(content_type: str) -> bool:
    """`application/json`, with parameters (`; charset=utf-8`) or as a `+json` suffix."""
    media = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


class JsonBodyRoute(APIRoute):
    """A route that, if it takes a body, answers 415 to a request that says its body is
    something other than JSON (FastAPI would read it as bytes and answer 422). A request
    that says nothing of its body's type is read as JSON."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        # FastAPI (since 0.132) reads a body with no Content-Type as bytes by default, so
        # that a browser's cross-site request with no preflight (a Blob body has no type)
        # cannot post JSON to a local app that trusts where a request comes from. Here
        # nothing trusts that: every route that acts for someone asks for a bearer token,
        # which such a request cannot carry, and the auth service's routes act only on
        # the password or token in the body itself.
        kwargs["strict_content_type"] = False
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def json_only(request: Request) -> Response:
            content_type = request.headers.get("content-type")
            if content_type is not None and not is_json(content_type):
                return JSONResponse(
                    {"detail": f"the body must be {JSON}, not {content_type!r}"}, 415
                )
            return await handler(JsonRequest(request.scope, request.receive))

        return json_only
