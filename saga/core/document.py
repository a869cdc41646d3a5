"""Definition documents: a saga type as a validated document, and its compilation.

A document (YAML or JSON, or built in Python as these models) names the saga, its
version, the JSON Schema of its input, and its steps: who does each, the command to
send (its type and an input template), the reply that means success, the compensation,
a condition, a timeout and retry policies. `compile_definition` checks what a schema
cannot — paths that parse, steps that read only earlier steps, conditions that are
conditions, the pivot rule — and returns the definition the core runs.
"""

import contextvars
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Annotated, Any, Final

import jsonschema
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    HttpUrl,
    Tag,
    ValidationError,
)

from contracts.messages import COMMANDS, REPLIES
from contracts.topology import SERVICES, Participant, check_participant
from saga.core.conditions import Condition, ConditionError
from saga.core.definition import (
    BuildError,
    Command,
    CommandBuilder,
    InputCheck,
    InputError,
    SagaDefinition,
    StepDefinition,
    Summary,
)
from saga.core.paths import Path, PathError, Template
from saga.core.policy import RetryPolicy
from saga.core.state import SagaState

_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
NAME_PATTERN: Final = r"^[a-z][a-z0-9_-]{0,63}$"
STEP_PATTERN: Final = r"^[a-z][a-z0-9_]{0,63}$"
TYPE_PATTERN: Final = r"^[A-Za-z][A-Za-z0-9_.]{0,63}$"
# The reply type of an HTTP participant's success (its 2xx answer).
HTTP_SUCCEEDED: Final = "HttpSucceeded"


def _seconds(value: Any) -> Any:
    """`"500ms"`, `"10s"`, `"2m"`, `"1h"`, or a number of seconds."""
    if isinstance(value, str) and (found := _DURATION.match(value)):
        return timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str) and not value.strip().upper().startswith("P"):
        raise ValueError("a duration is written 500ms, 10s, 2m, 1h, or a number of seconds")
    return value  # pydantic's own reading (ISO 8601: PT10S), or its error


Duration = Annotated[timedelta, BeforeValidator(_seconds)]


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RetrySpec(_Spec):
    """How often an action is tried and how long between tries (see RetryPolicy)."""

    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff: Duration = timedelta(seconds=0.5)
    max_backoff: Duration = timedelta(seconds=30)
    jitter: float = Field(default=0.5, ge=0, le=1)

    def policy(self) -> RetryPolicy:
        """The core's retry policy."""
        return RetryPolicy(
            max_attempts=self.max_attempts,
            backoff=self.backoff.total_seconds(),
            max_backoff=self.max_backoff.total_seconds(),
            jitter=self.jitter,
        )


class ActionSpec(_Spec):
    """A command and the reply that means it was done."""

    command: str = Field(pattern=TYPE_PATTERN)
    # A template (see saga.core.paths) that renders to the command's payload object.
    input: dict[str, Any] = Field(default_factory=dict)
    # The reply type that means success; none for an HTTP participant (its 2xx does).
    reply: str | None = Field(default=None, pattern=TYPE_PATTERN)


class BreakerSpec(_Spec):
    """After `threshold` transient failures in a row, calls are refused for `reset_after`."""

    threshold: int = Field(default=5, ge=1, le=1000)
    reset_after: Duration = timedelta(seconds=10)


class HttpSpec(_Spec):
    """An endpoint: each command is POSTed to `<url>/<command type>`."""

    url: HttpUrl
    timeout: Duration = timedelta(seconds=5)
    breaker: BreakerSpec = BreakerSpec()


class ParticipantSpec(_Spec):
    """How to reach a participant other than through its queue."""

    http: HttpSpec


class StepSpec(_Spec):
    """One step: its participant, its action and compensation, when it runs, how long
    each try may take and how often it is tried."""

    name: str = Field(pattern=STEP_PATTERN)
    # The service whose queue `<ns>.<participant>` takes the step's commands.
    participant: Annotated[Participant, AfterValidator(check_participant)]
    action: ActionSpec
    compensation: ActionSpec | None = None
    when: str | None = Field(default=None, min_length=1, max_length=500)
    timeout: Duration = timedelta(seconds=10)
    retry: RetrySpec = RetrySpec()
    # Undoing must not give up easily: a saga that cannot be undone needs a human.
    compensation_retry: RetrySpec = RetrySpec(max_attempts=5)


class GroupSpec(_Spec):
    """Steps that run at once; the saga goes on when all have succeeded. If one fails,
    those that succeeded are undone (at once), late replies of the others are awaited
    and dealt with, then the steps before the group are undone."""

    name: str = Field(pattern=STEP_PATTERN)
    parallel: list[StepSpec] = Field(min_length=2, max_length=20)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "group" if "parallel" in value else "step"
    return "group" if isinstance(value, GroupSpec) else "step"


StageSpec = Annotated[
    Annotated[StepSpec, Tag("step")] | Annotated[GroupSpec, Tag("group")],
    Discriminator(_kind),
]


class DefinitionSpec(_Spec):
    """A saga type as a document."""

    # Participants reached over HTTP, by name (the others take their commands from
    # their queues themselves).
    participants: dict[
        Annotated[Participant, AfterValidator(check_participant)], ParticipantSpec
    ] = Field(default_factory=dict, max_length=50)

    name: str = Field(pattern=NAME_PATTERN)
    version: int = Field(ge=1)
    description: str | None = Field(default=None, max_length=2000)
    # The JSON Schema (2020-12) every input must match.
    input: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    # Steps run one after another; a group's steps run at once.
    steps: list[StageSpec] = Field(min_length=1, max_length=100)

    def named_participants(self) -> list[Participant]:
        """Every participant the definition's steps name, in order, once each."""
        return list(dict.fromkeys(s.participant for stage in self.stages() for s in stage))

    def stages(self) -> list[list[StepSpec]]:
        """The steps, stage by stage."""
        return [s.parallel if isinstance(s, GroupSpec) else [s] for s in self.steps]

    # What to show of a saga (`saga show`, the API): name -> template; a path that
    # leads nowhere yet shows as null.
    summary: dict[str, str] = Field(default_factory=dict)
    # Who may start sagas of this type through `POST /sagas` (admins always may).
    roles: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]] = Field(
        default_factory=lambda: ["admin"], max_length=20
    )


class DefinitionError(ValueError):
    """A document that is not a definition; the message names the place and the problem."""


def read_definition(data: Any) -> DefinitionSpec:
    """Validate a parsed document (a dict from YAML or JSON); raises DefinitionError."""
    try:
        return DefinitionSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_place(e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise DefinitionError(f"not a saga definition: {problems}") from None


def _place(loc: tuple[int | str, ...]) -> str:
    """`steps.2.parallel.0.timeout`: the error's place, without the union's tags."""
    parts = [
        str(p)
        for i, p in enumerate(loc)
        if not (p in ("step", "group") and i and isinstance(loc[i - 1], int))
    ]
    return ".".join(parts) or "document"


# While a definition compiles: the input fields its schema allows, if it names them all
# (an object schema with `additionalProperties: false`); paths into others are typos.
_INPUT_FIELDS: contextvars.ContextVar[frozenset[str] | None] = contextvars.ContextVar(
    "input_fields", default=None
)


def _closed_fields(schema: dict[str, Any]) -> frozenset[str] | None:
    properties = schema.get("properties")
    if schema.get("additionalProperties") is False and isinstance(properties, dict):
        return frozenset(properties)
    return None


def compile_definition(spec: DefinitionSpec) -> SagaDefinition:
    """The definition the core runs; raises DefinitionError naming what is wrong."""
    token = _INPUT_FIELDS.set(_closed_fields(spec.input))
    try:
        return _compile(spec)
    finally:
        _INPUT_FIELDS.reset(token)


def _compile(spec: DefinitionSpec) -> SagaDefinition:
    where = f"saga {spec.name} v{spec.version}"
    stages = spec.stages()
    names = [step.name for stage in stages for step in stage]
    groups = [s.name for s in spec.steps if isinstance(s, GroupSpec)]
    if len(set(names + groups)) != len(names + groups):
        raise DefinitionError(f"{where}: step and group names must be unique, got {names + groups}")
    try:
        jsonschema.Draft202012Validator.check_schema(spec.input)
    except jsonschema.SchemaError as exc:
        raise DefinitionError(f"{where}: input is not a JSON Schema: {exc.message}") from None
    shop = sorted(set(spec.participants) & set(SERVICES))
    if shop:
        raise DefinitionError(f"{where}: {shop} are the shop's own services, not HTTP participants")
    unused = set(spec.participants) - {s.participant for stage in stages for s in stage}
    if unused:
        raise DefinitionError(f"{where}: participants {sorted(unused)} are named by no step")
    steps: list[StepDefinition] = []
    for stage in stages:
        # A step reads the steps of earlier stages, not those running beside it.
        earlier = frozenset(s.name for s in steps)
        steps += [
            _compile_step(
                s,
                earlier=earlier,
                http=spec.participants.get(s.participant),
                where=f"{where}, step {s.name}",
            )
            for s in stage
        ]
    summary = {
        k: _template(v, earlier=frozenset(names), where=f"{where}, summary {k}")
        for k, v in spec.summary.items()
    }
    try:
        return SagaDefinition(
            name=spec.name,
            version=spec.version,
            steps=tuple(steps),
            stages=tuple(tuple(s.name for s in stage) for stage in stages),
            check_input=_input_check(spec.input),
            summarize=_summarizer(summary),
        )
    except ValueError as exc:
        raise DefinitionError(str(exc)) from None


def _reply_of(action: ActionSpec, http: ParticipantSpec | None, step: StepSpec, where: str) -> str:
    """The reply type that means the action was done."""
    if step.participant in SERVICES:  # the shop's own: their contracts are known
        if action.command not in COMMANDS:
            raise DefinitionError(
                f"{where}: {step.participant} takes no command {action.command!r} "
                f"(the shop's commands: {', '.join(sorted(COMMANDS))})"
            )
        if action.reply not in REPLIES:
            raise DefinitionError(
                f"{where}: {action.reply!r} is not a reply of the shop's services "
                f"({', '.join(sorted(r for r in REPLIES if r != 'CommandFailed'))})"
            )
    if http is None:
        if action.reply is None:
            raise DefinitionError(f"{where}: reply is required (the type that means success)")
        return action.reply
    if action.reply is not None:
        raise DefinitionError(
            f"{where}: {step.participant} is an HTTP participant: its 2xx answer is the "
            "reply, so the action names none"
        )
    if http.http.timeout >= step.timeout:
        raise DefinitionError(
            f"{where}: the step's timeout ({step.timeout}) must be longer than its "
            f"participant's HTTP timeout ({http.http.timeout}), or each try times out "
            "before its call does"
        )
    return HTTP_SUCCEEDED


def _compile_step(
    step: StepSpec, *, earlier: frozenset[str], http: ParticipantSpec | None, where: str
) -> StepDefinition:
    compensation = step.compensation
    condition = None
    if step.when is not None:
        try:
            condition = Condition(step.when)
        except ConditionError as exc:
            raise DefinitionError(f"{where}, when: {exc}") from None
        _check_reads(condition.paths, earlier, f"{where}, when")
    try:
        return StepDefinition(
            name=step.name,
            participant=step.participant,
            command=_builder(step.action, earlier, f"{where}, action"),
            success=_reply_of(step.action, http, step, f"{where}, action"),
            compensation=(
                # A compensation may read the step's own result, optionally: it also
                # runs after its step timed out, with no result.
                _builder(
                    compensation, earlier | {step.name}, f"{where}, compensation", own=step.name
                )
                if compensation
                else None
            ),
            compensated=(
                _reply_of(compensation, http, step, f"{where}, compensation")
                if compensation
                else None
            ),
            condition=_judge(condition) if condition else _always,
            timeout=step.timeout,
            retry=step.retry.policy(),
            compensation_retry=step.compensation_retry.policy(),
        )
    except DefinitionError:
        raise  # it says where already
    except ValueError as exc:
        raise DefinitionError(f"{where}: {exc}") from None


def _template(source: Any, *, earlier: frozenset[str], where: str) -> Template:
    try:
        template = Template.compile(source)
    except PathError as exc:
        raise DefinitionError(f"{where}: {exc}") from None
    _check_reads(template.paths, earlier, where)
    return template


def _check_reads(paths: list[Path] | tuple[Path, ...], earlier: frozenset[str], where: str) -> None:
    for path in paths:
        if path.root == "steps" and path.step not in earlier:
            raise DefinitionError(
                f"{where}: {path.text!r} reads step {path.step!r}, which is not an earlier "
                "step (no such step, or one that runs later or beside this one)"
            )
        if path.root == "input" and _INPUT_FIELDS.get() is not None:
            field = path.segments[0] if path.segments else None
            if isinstance(field, str) and field not in (_INPUT_FIELDS.get() or ()):
                raise DefinitionError(
                    f"{where}: {path.text!r} reads input field {field!r}, which the input "
                    "schema does not allow"
                )


def _builder(
    action: ActionSpec, earlier: frozenset[str], where: str, *, own: str | None = None
) -> CommandBuilder:
    template = _template(action.input, earlier=earlier, where=f"{where} input")
    for path in template.paths:
        if own is not None and path.step == own and not path.optional:
            raise DefinitionError(
                f"{where} input: {path.text!r} must end in `| optional`: a compensation also "
                "runs after its step timed out, when the step has no result"
            )
    contract = COMMANDS.get(action.command)

    def build(state: SagaState) -> Command:
        try:
            payload = template.render(context_of(state))
            if contract is not None:  # a command of the shop's contracts: checked by it
                payload = contract.model_validate(payload).model_dump(mode="json")
        except (PathError, ValidationError, TypeError, ValueError) as exc:
            # Whatever this saga's data does to the template or the contract, the step
            # fails with the reason; the orchestrator never trips over it.
            raise BuildError(f"{action.command}: {exc}") from None
        return Command(action.command, payload)

    return build


def _judge(condition: Condition) -> Callable[[SagaState], bool]:
    def applies(state: SagaState) -> bool:
        try:
            return condition(context_of(state))
        except (ConditionError, TypeError) as exc:
            raise BuildError(f"condition {condition.text!r}: {exc}") from None

    return applies


def _always(_: SagaState) -> bool:
    return True


def _summarizer(summary: Mapping[str, Template]) -> Summary:
    def summarize(state: SagaState) -> dict[str, Any]:
        context = context_of(state)
        shown: dict[str, Any] = {}
        for name, template in summary.items():
            try:
                shown[name] = template.render(context)
            except PathError:
                shown[name] = None  # not known yet
        return shown

    return summarize


def _input_check(schema: dict[str, Any]) -> InputCheck:
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )

    def check(saga_input: Mapping[str, Any]) -> dict[str, Any]:
        errors = sorted(validator.iter_errors(saga_input), key=lambda e: list(map(str, e.path)))
        if errors:
            raise InputError("; ".join(_problem(e) for e in errors[:5]))
        return dict(saga_input)

    return check


def _problem(error: jsonschema.ValidationError) -> str:
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"input{where}: {error.message}"


def context_of(state: SagaState) -> dict[str, Any]:
    """What paths see of a saga: its input, its steps' results and statuses, itself."""
    return {
        "input": state.input,
        "steps": {
            s.name: {"status": s.status, "result": state.results.get(s.name)} for s in state.steps
        },
        "saga": {"id": state.saga_id, "type": state.saga_type, "customer": state.customer},
    }
