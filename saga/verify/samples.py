"""What the explorer feeds a definition: inputs its schema accepts (one for each value of
an enumerated field a condition reads), and a success reply for each action, made up from
the reply's contract where one is catalogued, else from the paths that read the result."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from saga.core.conditions import Condition
from saga.core.definition import InputError, SagaDefinition
from saga.core.document import DefinitionSpec
from saga.core.events import Action, StepSkipped
from saga.core.paths import Path, Template
from saga.participant.check_samples import MADE_UP, SampleError, sample_of_schema
from saga.verify.script import OK
from saga.verify.world import Replies, World


@dataclass(frozen=True)
class SampleInput:
    """An input the explorer starts sagas on, and what to call it in a path."""

    name: str
    value: Mapping[str, Any]


def sample_inputs(spec: DefinitionSpec, definition: SagaDefinition) -> list[SampleInput]:
    """A made-up input, and one more for each value of each enumerated (or boolean) input
    field a step's condition reads; of those that take the same steps when every step
    succeeds, the first only. Raises SampleError if no input can be made up."""
    base = sample_of_schema(spec.input, what=f"an input of {spec.name}")
    found = [SampleInput("input", base)]
    properties = spec.input.get("properties") or {}
    for name in _fields_conditions_read(spec):
        schema = properties.get(name) if isinstance(properties, Mapping) else None
        if not isinstance(schema, Mapping):
            continue
        values = schema.get("enum") or ([True, False] if schema.get("type") == "boolean" else [])
        for value in values:
            candidate = {**base, name: value}
            try:
                definition.check_input(candidate)
            except InputError:
                continue
            found.append(SampleInput(f"{name}={value}", candidate))
    return _distinct(found, definition, sample_replies(spec, definition))


def _fields_conditions_read(spec: DefinitionSpec) -> list[str]:
    fields: dict[str, None] = {}
    for stage in spec.stages():
        for step in stage:
            if step.when is None:
                continue
            for path in Condition(step.when).paths:
                head = path.segments[0] if path.segments else None
                if path.root == "input" and isinstance(head, str):
                    fields[head] = None
    return list(fields)


def _distinct(
    inputs: list[SampleInput], definition: SagaDefinition, replies: Replies
) -> list[SampleInput]:
    """The inputs that skip different steps when every step succeeds (the first of each)."""
    seen: dict[tuple[str, ...], SampleInput] = {}
    for sample in inputs:
        world = World.start(definition, sample.value, replies)
        while (need := world.run()) is not None:
            world.choose(need, OK)
        skipped = tuple(r.event.step for r in world.records if isinstance(r.event, StepSkipped))
        seen.setdefault(skipped, sample)
    return list(seen.values())


def sample_replies(spec: DefinitionSpec, definition: SagaDefinition) -> Replies:
    """A success reply's payload for each action of each step."""
    reads = _result_reads(spec)
    replies: dict[tuple[str, Action], Mapping[str, Any]] = {}
    for step in definition.steps:
        made_up = _from_paths(reads.get(step.name, []))
        replies[(step.name, "execute")] = _of_model(step.success_model, made_up)
        if step.compensation is not None:
            replies[(step.name, "compensate")] = _of_model(step.compensated_model, {})
    return replies


def _of_model(model: type[BaseModel] | None, otherwise: dict[str, Any]) -> dict[str, Any]:
    if model is None:
        return otherwise
    made_up = sample_of_schema(model.model_json_schema(), what=model.__name__)
    try:
        return model.model_validate(made_up).model_dump(mode="json")
    except ValidationError as exc:
        raise SampleError(f"cannot make up a {model.__name__}: {exc}") from None


def _result_reads(spec: DefinitionSpec) -> dict[str, list[Path]]:
    """Each step's result as the definition reads it: the paths into `steps.NAME.result`."""
    paths: list[Path] = []
    for stage in spec.stages():
        for step in stage:
            for action in (step.action, step.compensation):
                if action is not None:
                    paths += Template.compile(action.input).paths
            if step.when is not None:
                paths += Condition(step.when).paths
    for text in spec.summary.values():
        paths += Template.compile(text).paths
    found: dict[str, list[Path]] = {}
    for path in paths:
        if path.step is not None and path.segments[1:2] == ("result",):
            found.setdefault(path.step, []).append(path)
    return found


def _from_paths(paths: list[Path]) -> dict[str, Any]:
    """A result in which every path given leads somewhere (a made-up string at its end)."""
    result: dict[str, Any] = {}
    for path in paths:
        if path.segments[2:]:
            _grow(result, list(path.segments[2:]))
    return result


def _grow(node: Any, segments: list[Any]) -> Any:
    """`node` with `segments` leading somewhere in it (what is there already is kept)."""
    if not segments:
        return MADE_UP if node is None else node
    head, rest = segments[0], segments[1:]
    if isinstance(head, str):
        node = node if isinstance(node, dict) else {}
        node[head] = _grow(node.get(head), rest)
        return node
    node = node if isinstance(node, list) else []
    index = head if isinstance(head, int) else 0  # `[*]`: one element
    needed = index + 1 if index >= 0 else -index
    while len(node) < needed:
        node.append(None)
    node[index] = _grow(node[index], rest)
    return node
