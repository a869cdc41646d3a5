"""What the conformance check sends a participant: its steps' commands with payloads, given
by the user, made up from a command's contract, or rendered from a definition's templates.

A made-up value is the same every time: strings `conformance-check` (or what a format
or pattern asks for), emails `conformance-check@example.com`, numbers 1 (or the least
allowed), one element per list, the required fields of an object only. Such a payload
names nothing that exists (no such product, customer or vendor), so a participant of
real data most often refuses it: the check still proves the protocol's rules on the
refusal, and leaves nothing behind.
"""

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from contracts.envelope import CHECK_SAGA_PREFIX, first_error
from saga.core.document import ActionSpec, DefinitionSpec
from saga.core.paths import PathError, Template

MADE_UP: Final = "conformance-check"
MADE_UP_EMAIL: Final = "conformance-check@example.com"
# A string a format asks for, where the plain made-up one would not do.
_FORMATS: Final = {
    "email": MADE_UP_EMAIL,
    "idn-email": MADE_UP_EMAIL,
    "date-time": "2000-01-01T00:00:00Z",
    "date": "2000-01-01",
    "time": "00:00:00Z",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "uri": "https://example.com/conformance-check",
    "url": "https://example.com/conformance-check",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
}
# Tried in order against a string's pattern and lengths.
_CANDIDATES: Final = (MADE_UP, "check", "CHECK", "1", "0", "1.00", "a", "A", "x1", MADE_UP_EMAIL)
# The step name in the keys of a command named without a definition.
NAMED_STEP: Final = "check"
Payload = Mapping[str, Any]
Models = Mapping[str, type[BaseModel]]


class SampleError(ValueError):
    """No payload can be had for a command: the user has to give one."""


@dataclass(frozen=True)
class Action:
    """One command the check sends: its type, its payload, and the reply type that means
    it was done (None: any reply but CommandFailed)."""

    command: str
    payload: Payload = field(default_factory=dict)
    reply: str | None = None


@dataclass(frozen=True)
class StepSample:
    """A step as the check drives it: its action, the compensation that undoes it (None:
    the step cannot be undone), and the step's name for the idempotency keys."""

    action: Action
    compensation: Action | None = None
    step: str = NAMED_STEP


def learn_steps(
    participant: str,
    documents: Iterable[DefinitionSpec],
    *,
    payloads: Mapping[str, Payload] | None = None,
    models: Models | None = None,
) -> list[StepSample]:
    """Every step of these definitions that names the participant, each kind once (by its
    command and compensation), with a payload for each command: the user's (`payloads`,
    by command type), else one made up from its contract (`models`), else its template
    rendered over a made-up saga. Raises SampleError where none can be had."""
    given, known = payloads or {}, models or {}
    found: dict[tuple[str, str | None], StepSample] = {}
    for document in documents:
        if participant in document.participants:
            raise SampleError(
                f"{participant} is an HTTP participant (definition {document.name}): "
                "the check drives participants that take commands from their queue"
            )
        steps = [s for stage in document.stages() for s in stage if s.participant == participant]
        for step in steps:
            undo = step.compensation
            kind = (step.action.command, undo.command if undo else None)
            if kind in found:
                continue
            found[kind] = StepSample(
                action=_action(step.action, document, given, known),
                compensation=_action(undo, document, given, known) if undo else None,
                step=step.name,
            )
    return list(found.values())


def named_steps(
    named: Iterable[str],
    *,
    payloads: Mapping[str, Payload] | None = None,
    models: Models | None = None,
) -> list[StepSample]:
    """Steps named without a definition, each `COMMAND` or `COMMAND:COMPENSATION`, with
    the user's payloads (or, for a command of a known contract, made-up ones)."""
    given, known = payloads or {}, models or {}
    steps = []
    for text in named:
        command, _, undo = text.partition(":")
        steps.append(
            StepSample(
                action=Action(command, _payload_of(command, given, known, None)),
                compensation=Action(undo, _payload_of(undo, given, known, None)) if undo else None,
                step=_step_name(command),
            )
        )
    return steps


def _step_name(command: str) -> str:
    """`BookCourier` -> `book_courier`: a step name for the keys."""
    words = re.sub(r"(?<!^)(?=[A-Z])", "_", command).lower()
    name = re.sub(r"[^a-z0-9_]", "_", words).strip("_")
    return name if re.fullmatch(r"[a-z][a-z0-9_]*", name) else NAMED_STEP


def _action(
    spec: ActionSpec, document: DefinitionSpec, given: Mapping[str, Payload], known: Models
) -> Action:
    return Action(
        spec.command, _payload_of(spec.command, given, known, (spec, document)), spec.reply
    )


def _payload_of(
    command: str,
    given: Mapping[str, Payload],
    known: Models,
    template: tuple[ActionSpec, DefinitionSpec] | None,
) -> Payload:
    model = known.get(command)
    if command in given:
        payload = given[command]
        if model is None:
            return payload
        try:
            return model.model_validate(payload).model_dump(mode="json")
        except ValidationError as exc:
            raise SampleError(f"the payload given for {command}: {first_error(exc)}") from None
    if model is not None:
        made_up = sample_of_schema(model.model_json_schema(), what=command)
        try:
            return model.model_validate(made_up).model_dump(mode="json")
        except ValidationError as exc:
            raise SampleError(
                f"cannot make up a payload for {command} ({first_error(exc)}): give one"
            ) from None
    if template is None:
        raise SampleError(f"no payload for {command}: give one (--payload {command}=JSON)")
    spec, document = template
    try:
        rendered = Template.compile(spec.input).render(made_up_saga(document))
    except PathError as exc:
        raise SampleError(
            f"cannot make up a payload for {command} from definition {document.name} "
            f"({exc}): give one (--payload {command}=JSON)"
        ) from None
    assert isinstance(rendered, dict)  # a template of an object renders to an object
    return rendered


def made_up_saga(document: DefinitionSpec) -> dict[str, Any]:
    """What a definition's paths see of a made-up saga: an input its schema accepts, its
    steps done without results, and a made-up customer."""
    return {
        "input": sample_of_schema(document.input, what=f"the input of {document.name}"),
        "steps": {
            s.name: {"status": "succeeded", "result": None}
            for stage in document.stages()
            for s in stage
        },
        "saga": {
            "id": f"{CHECK_SAGA_PREFIX}sample",
            "type": document.name,
            "customer": MADE_UP_EMAIL,
        },
    }


def sample_of_schema(schema: Mapping[str, Any], *, what: str = "the value") -> Any:
    """A value the JSON Schema accepts, the same every time; raises SampleError where
    none can be made up (`what` names the value in the message)."""
    value = _sample(schema, schema, what)
    error = next(iter(Draft202012Validator(dict(schema)).iter_errors(value)), None)
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "the value"
        raise SampleError(f"cannot make up {what} ({where}: {error.message}): give one")
    return value


def _sample(node: Any, root: Mapping[str, Any], what: str) -> Any:
    if not isinstance(node, Mapping):
        return MADE_UP  # `true`, or anything else that accepts all
    if "$ref" in node:
        return _sample(_resolve(node["$ref"], root, what), root, what)
    if "const" in node:
        return node["const"]
    for key in ("examples", "enum"):
        if isinstance(node.get(key), list) and node[key]:
            return node[key][0]
    if "default" in node:
        return node["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        choices = node.get(key)
        if isinstance(choices, list) and choices:
            chosen = next((c for c in choices if not _only_null(c)), choices[0])
            return _sample(chosen, root, what)
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None and "properties" in node:
        kind = "object"
    match kind:
        case "object":
            properties = node.get("properties") or {}
            return {
                name: _sample(properties.get(name, {}), root, what)
                for name in node.get("required") or []
            }
        case "array":
            count = max(int(node.get("minItems", 0)), 1)
            if node.get("maxItems") == 0:
                return []
            return [_sample(node.get("items", {}), root, what) for _ in range(count)]
        case "string":
            return _string(node, what)
        case "integer" | "number":
            return _number(node)
        case "boolean":
            return False
        case "null":
            return None
    return MADE_UP


def _only_null(node: Any) -> bool:
    return isinstance(node, Mapping) and node.get("type") == "null"


def _resolve(ref: Any, root: Mapping[str, Any], what: str) -> Any:
    if not isinstance(ref, str) or not ref.startswith("#/"):
        raise SampleError(f"cannot make up {what}: it refers to {ref!r}, outside its schema")
    node: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            raise SampleError(f"cannot make up {what}: no {ref!r} in its schema")
        node = node[part]
    return node


def _string(node: Mapping[str, Any], what: str) -> str:
    fmt = node.get("format")
    first = _FORMATS.get(fmt, MADE_UP) if isinstance(fmt, str) else MADE_UP
    least, most = int(node.get("minLength", 0)), node.get("maxLength")
    pattern = node.get("pattern")
    for candidate in (first, *_CANDIDATES):
        for text in (candidate, _fitted(candidate, least, most)):
            if len(text) < least or (most is not None and len(text) > most):
                continue
            if isinstance(pattern, str) and not re.search(pattern, text):
                continue
            return text
    raise SampleError(f"cannot make up {what}: no string of mine matches {pattern!r}: give one")


def _fitted(text: str, least: int, most: Any) -> str:
    """The text cut to `most` characters, or padded to `least`."""
    if isinstance(most, int) and len(text) > most:
        return text[:most]
    return text + "x" * max(0, least - len(text))


def _number(node: Mapping[str, Any]) -> int | float:
    low, high = node.get("minimum"), node.get("maximum")
    if isinstance(node.get("exclusiveMinimum"), int | float):
        low = math.floor(node["exclusiveMinimum"]) + 1
    if isinstance(node.get("exclusiveMaximum"), int | float):
        high = math.ceil(node["exclusiveMaximum"]) - 1
    value: int | float = 1
    if isinstance(low, int | float) and value < low:
        value = math.ceil(low)
    if isinstance(high, int | float) and value > high:
        value = math.floor(high)
    step = node.get("multipleOf")
    if isinstance(step, int | float) and step > 0:
        value = step * math.ceil(value / step)
    return value
