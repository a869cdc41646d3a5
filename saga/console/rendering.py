"""The console's pages from Jinja templates, every value autoescaped."""

import json
from datetime import UTC, datetime
from typing import Any, Final

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from saga.console.sessions import Session

_TEMPLATES: Final = Environment(
    loader=PackageLoader("saga.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _pretty(value: Any) -> str:
    """A value as indented JSON text, to be escaped like any other text (not `tojson`,
    which writes `<` as `\\u003c`: people read the text as it was written)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


_TEMPLATES.filters["pretty"] = _pretty


def fragment(name: str, **context: Any) -> str:
    """A partial template (a row, a section) as HTML text, for a page or a live update."""
    return _TEMPLATES.get_template(f"console/{name}").render(**context)


def page(
    request: Request,
    name: str,
    *,
    session: Session | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A whole page, with the signed-in user (if any) in its header."""
    html = fragment(name, request=request, session=session, now=datetime.now(UTC), **context)
    return HTMLResponse(html, status_code=status)
