"""What is wrong with a document or an input: every problem found, each with its place."""

from dataclasses import dataclass
from typing import Any

# Where a problem is: the keys and indexes from the top of the document or input,
# as pydantic and FastAPI give a field's place (`("steps", 0, "when")`).
Place = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong, and where."""

    loc: Place
    msg: str

    def as_detail(self, *prefix: str | int) -> dict[str, Any]:
        """The problem as an HTTP 422 answer lists it (FastAPI's shape), its place
        behind `prefix` (where in the request the document is: `"body"`)."""
        return {"loc": [*prefix, *self.loc], "msg": self.msg, "type": "value_error"}


def dotted(loc: Place) -> str:
    """`steps.0.when`: a place as one word."""
    return ".".join(map(str, loc))
