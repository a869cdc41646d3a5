"""The path language of saga definitions: `{{input.items}}`, `{{steps.reserve.result.amount}}`.

A path starts at a root — `input` (the saga's input), `steps` (each step's `result`
and `status`) or `saga` (`id`, `type`, `customer`) — and goes on by `.field`, `[index]`
(negative counts from the end) and `[*]` (every element of a list, the rest of the path
taken from each). A name that is not a root is a field of the input: `payment_method`
is `input.payment_method`. Filters follow a `|`: `unique` (a list without repeats, in
order), `length`, `first`, `last`, and `optional` (null where the path leads nowhere
or a filter finds nothing, rather than an error).

A template is any JSON value: a string that is one `{{path}}` and nothing else becomes
the value the path leads to (a list, an object, a number); a string with text around
its paths gets them written in; lists and objects are rendered member by member.

Nothing is evaluated: paths are parsed once, when the definition is loaded, and then
only followed.
"""

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

ROOTS: Final = frozenset({"input", "steps", "saga"})
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEGMENT: Final = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(-?\d+)\]|\[(\*)\]")
_PLACEHOLDER: Final = re.compile(r"\{\{(.*?)\}\}")
MAX_PATH: Final = 200


class PathError(ValueError):
    """A path that cannot be parsed (in a definition), or leads nowhere (for one saga)."""


_ALL: Final = object()  # the [*] segment
Segment = str | int | object


def _unique(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise PathError(f"unique needs a list, got {type(value).__name__}")
    seen: dict[str, Any] = {}
    for item in value:
        seen.setdefault(json.dumps(item, sort_keys=True, default=str), item)
    return list(seen.values())


def _length(value: Any) -> int:
    if not isinstance(value, list | str | dict):
        raise PathError(f"length needs a list, a string or an object, got {type(value).__name__}")
    return len(value)


def _end(index: int) -> Callable[[Any], Any]:
    def pick(value: Any) -> Any:
        if not isinstance(value, list) or not value:
            raise PathError("first and last need a list that is not empty")
        return value[index]

    return pick


FILTERS: Final[Mapping[str, Callable[[Any], Any]]] = {
    "unique": _unique,
    "length": _length,
    "first": _end(0),
    "last": _end(-1),
}


@dataclass(frozen=True)
class Path:
    """A parsed path: where it starts, the steps it takes, the filters after it."""

    text: str
    root: str
    segments: tuple[Segment, ...]
    filters: tuple[str, ...] = ()
    optional: bool = False

    @classmethod
    def parse(cls, text: str) -> "Path":
        """Parse `root.a[0].b | filter`; raises PathError naming what is wrong."""
        source = text.strip()
        if len(source) > MAX_PATH:
            raise PathError(f"path longer than {MAX_PATH} characters: {source[:40]}...")
        body, *filters = (part.strip() for part in source.split("|"))
        head = _NAME.match(body)
        if head is None:
            raise PathError(f"path {source!r} must start with a name")
        segments: list[Segment] = []
        root, at = head.group(), head.end()
        if root not in ROOTS:
            segments.append(root)  # a field of the input
            root = "input"
        while at < len(body):
            found = _SEGMENT.match(body, at)
            if found is None:
                raise PathError(f"path {source!r}: cannot read {body[at:]!r}")
            name, index, every = found.groups()
            segments.append(name if name is not None else _ALL if every else int(index))
            at = found.end()
        unknown = [f for f in filters if f not in FILTERS and f != "optional"]
        if unknown:
            known = ", ".join([*FILTERS, "optional"])
            raise PathError(f"path {source!r}: unknown filter {unknown[0]!r} (known: {known})")
        kept = tuple(f for f in filters if f != "optional")
        return cls(source, root, tuple(segments), kept, optional=len(kept) != len(filters))

    @property
    def step(self) -> str | None:
        """The step whose data the path reads (`steps.NAME...`), if any."""
        if self.root == "steps" and self.segments and isinstance(self.segments[0], str):
            return self.segments[0]
        return None

    def get(self, context: Mapping[str, Any]) -> Any:
        """The value the path leads to; raises PathError if it leads nowhere."""
        try:
            value = _follow(context[self.root], self.segments, self.root)
            for name in self.filters:
                value = FILTERS[name](value)
        except PathError:
            if self.optional:
                return None
            raise
        return value


def _follow(value: Any, segments: tuple[Segment, ...], where: str) -> Any:
    for i, segment in enumerate(segments):
        if segment is _ALL:
            if not isinstance(value, list):
                raise PathError(f"{where}[*]: not a list")
            rest = segments[i + 1 :]
            return [_follow(item, rest, f"{where}[*]") for item in value]
        if isinstance(segment, int):
            if not isinstance(value, list) or not -len(value) <= segment < len(value):
                raise PathError(f"{where}[{segment}]: no such element")
            value, where = value[segment], f"{where}[{segment}]"
        else:
            if not isinstance(value, Mapping) or segment not in value:
                raise PathError(f"{where}.{segment}: no such field")
            value, where = value[segment], f"{where}.{segment}"
    return value


Renderer = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Template:
    """A JSON value with paths in it, parsed once and rendered for each saga."""

    source: Any
    render: Renderer
    paths: tuple[Path, ...]

    @classmethod
    def compile(cls, source: Any) -> "Template":
        """Parse every path in `source`; raises PathError on the first bad one."""
        paths: list[Path] = []
        return cls(source, _compile(source, paths), tuple(paths))


def _compile(source: Any, paths: list[Path]) -> Renderer:
    if isinstance(source, str):
        return _compile_string(source, paths)
    if isinstance(source, list):
        items = [_compile(item, paths) for item in source]
        return lambda context: [item(context) for item in items]
    if isinstance(source, dict):
        members = [(str(key), _compile(value, paths)) for key, value in source.items()]
        return lambda context: {key: value(context) for key, value in members}
    if source is None or isinstance(source, bool | int | float):
        return lambda _: source
    raise PathError(f"a template holds JSON values only, not {type(source).__name__}")


def _compile_string(source: str, paths: list[Path]) -> Renderer:
    pieces = _PLACEHOLDER.split(source)
    if len(pieces) == 1:
        if "{{" in source or "}}" in source:
            raise PathError(f"unbalanced braces in {source!r}")
        return lambda _: source
    parsed = [Path.parse(p) if i % 2 else p for i, p in enumerate(pieces)]
    paths.extend(p for p in parsed if isinstance(p, Path))
    if len(parsed) == 3 and parsed[0] == "" and parsed[2] == "":
        whole = parsed[1]
        assert isinstance(whole, Path)
        return whole.get  # the value itself, of whatever type

    def interpolate(context: Mapping[str, Any]) -> str:
        return "".join(_text(p.get(context)) if isinstance(p, Path) else p for p in parsed)

    return interpolate


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
