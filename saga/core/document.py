"""Definition documents: a saga type as a validated document, and its compilation.

A document (YAML or JSON, or built in Python as these models) names the saga, its
version, the JSON Schema of its input, and its steps: who does each, the command to
send (its type and an input template), the reply that means success, the compensation,
a condition, a timeout and retry policies. `compile_definition` checks what a schema
cannot — paths that parse, steps that read only earlier steps, conditions that are
conditions, the pivot rule — and returns the definition the core runs.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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
    SerializationInfo,
    SerializerFunctionWrapHandler,
    Tag,
    ValidationError,
    WrapSerializer,
)

from contracts.topology import Participant, check_participant
from saga.core.conditions import Condition, ConditionError
from saga.core.contracts import EMPTY, Catalogue, Contract, Model
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
from saga.core.durations import DURATION_FORMS, DurationError, duration_text, parse_duration
from saga.core.paths import Path, PathError, Template
from saga.core.policy import (
    COMPENSATION_RETRY,
    HTTP_BREAKER_RESET_AFTER,
    HTTP_BREAKER_THRESHOLD,
    HTTP_TIMEOUT,
    STEP_RETRY,
    STEP_TIMEOUT,
    RetryPolicy,
)
from saga.core.problems import Place, Problem, dotted
from saga.core.state import SagaState

NAME_PATTERN: Final = r"^[a-z][a-z0-9_-]{0,63}$"
STEP_PATTERN: Final = r"^[a-z][a-z0-9_]{0,63}$"
TYPE_PATTERN: Final = r"^[A-Za-z][A-Za-z0-9_.]{0,63}$"
# The reply type of an HTTP participant's success (its 2xx answer).
HTTP_SUCCEEDED: Final = "HttpSucceeded"


def _duration(value: Any) -> Any:
    """A duration as people write it (see saga.core.durations), or in the ISO 8601 form
    applied documents are stored in (`PT10S`), which pydantic reads."""
    iso = isinstance(value, str) and value.strip().lstrip("+-")[:1] in ("P", "p")
    if iso or isinstance(value, timedelta):
        return value
    return parse_duration(value)


def _not_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise DurationError(f"a duration cannot be negative; {DURATION_FORMS}")
    return value


# What a serialization's context says to write durations as ISO 8601 (`PT0.5S`): the
# form applied documents are stored and compared in, as they always were.
ISO_DURATIONS: Final = {"durations": "iso"}


def _written(value: timedelta, iso: SerializerFunctionWrapHandler, info: SerializationInfo) -> str:
    if info.context == ISO_DURATIONS:
        return str(iso(value))
    return duration_text(value)


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    AfterValidator(_not_negative),
    WrapSerializer(_written, return_type=str, when_used="json"),
]


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RetrySpec(_Spec):
    """How often an action is tried and how long between tries (see RetryPolicy); the
    defaults are a step's (STEP_RETRY)."""

    max_attempts: int = Field(default=STEP_RETRY.max_attempts, ge=1, le=100)
    backoff: Duration = timedelta(seconds=STEP_RETRY.backoff)
    max_backoff: Duration = timedelta(seconds=STEP_RETRY.max_backoff)
    jitter: float = Field(default=STEP_RETRY.jitter, ge=0, le=1)

    @classmethod
    def of(cls, policy: RetryPolicy) -> "RetrySpec":
        """The spec of a retry policy."""
        return cls(
            max_attempts=policy.max_attempts,
            backoff=timedelta(seconds=policy.backoff),
            max_backoff=timedelta(seconds=policy.max_backoff),
            jitter=policy.jitter,
        )

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

    threshold: int = Field(default=HTTP_BREAKER_THRESHOLD, ge=1, le=1000)
    reset_after: Duration = HTTP_BREAKER_RESET_AFTER


class HttpSpec(_Spec):
    """An endpoint: each command is POSTed to `<url>/<command type>`."""

    url: HttpUrl
    timeout: Duration = HTTP_TIMEOUT
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
    timeout: Duration = STEP_TIMEOUT
    retry: RetrySpec = RetrySpec.of(STEP_RETRY)
    compensation_retry: RetrySpec = RetrySpec.of(COMPENSATION_RETRY)


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
    """A document that is not a definition: every problem found, each with its place in
    the document, after a heading that says which document (`problems` may be empty when
    the heading says it all: a file that cannot be read)."""

    def __init__(self, heading: str, problems: Sequence[Problem] = ()) -> None:
        self.heading = heading
        self.problems = tuple(problems)
        listed = "; ".join(f"{dotted(p.loc)}: {p.msg}" if p.loc else p.msg for p in problems)
        super().__init__(f"{heading}: {listed}" if listed else heading)

    def within(self, source: str) -> "DefinitionError":
        """The same problems, the heading saying which file or document they are in."""
        return DefinitionError(f"{source}: {self.heading}", self.problems)


def read_definition(data: Any) -> DefinitionSpec:
    """Validate a parsed document (a dict from YAML or JSON); raises DefinitionError."""
    try:
        return DefinitionSpec.model_validate(data)
    except ValidationError as exc:
        problems = [Problem(_place(e["loc"]), e["msg"]) for e in exc.errors()]
        raise DefinitionError("not a saga definition", problems) from None


def _place(loc: tuple[int | str, ...]) -> Place:
    """`steps.2.parallel.0.timeout`: the error's place, without the union's tags."""
    return tuple(
        p
        for i, p in enumerate(loc)
        if not (p in ("step", "group") and i and isinstance(loc[i - 1], int))
    )


@dataclass
class _Compiling:
    """What a definition's compilation has found wrong so far, and what its checks read:
    the input fields the schema allows, if it names them all (an object schema with
    `additionalProperties: false`), so that a path into any other is a typo; and the
    participants' contracts."""

    input_fields: frozenset[str] | None
    catalogue: Catalogue
    problems: list[Problem] = field(default_factory=list)

    def found(self, loc: Place, msg: str) -> None:
        self.problems.append(Problem(loc, msg))


def _closed_fields(schema: dict[str, Any]) -> frozenset[str] | None:
    properties = schema.get("properties")
    if schema.get("additionalProperties") is False and isinstance(properties, dict):
        return frozenset(properties)
    return None


def compile_definition(spec: DefinitionSpec, catalogue: Catalogue = EMPTY) -> SagaDefinition:
    """The definition the core runs; raises DefinitionError with every problem that one
    pass over the document finds, each with its place. A step whose participant is in
    `catalogue` must use its commands and replies, and its payloads are checked by them."""
    job = _Compiling(_closed_fields(spec.input), catalogue)
    stages = spec.stages()
    names = [step.name for stage in stages for step in stage]
    groups = [s.name for s in spec.steps if isinstance(s, GroupSpec)]
    twice = sorted({n for n in names + groups if (names + groups).count(n) > 1})
    if twice:
        job.found(("steps",), f"step and group names must be unique: {', '.join(twice)} twice")
    try:
        jsonschema.Draft202012Validator.check_schema(spec.input)
    except jsonschema.SchemaError as exc:
        job.found(("input", *exc.path), f"not a JSON Schema: {exc.message}")
    for name in sorted(spec.participants):
        if name in catalogue:
            job.found(
                ("participants", name),
                "a participant with registered contracts takes its commands from its queue, "
                "not over HTTP",
            )
    used = {s.participant for stage in stages for s in stage}
    for name in sorted(set(spec.participants) - used):
        job.found(("participants", name), "named by no step")
    steps: list[StepDefinition] = []
    earlier: frozenset[str] = frozenset()
    for places, stage in _stage_places(spec):
        # A step reads the steps of earlier stages, not those running beside it.
        for loc, step in zip(places, stage, strict=True):
            compiled = _compile_step(
                step,
                earlier=earlier,
                http=spec.participants.get(step.participant),
                loc=loc,
                job=job,
            )
            if compiled is not None:
                steps.append(compiled)
        earlier |= {s.name for s in stage}
    _check_pivot(spec, job)
    summary = {
        k: _template(v, earlier=frozenset(names), loc=("summary", k), job=job)
        for k, v in spec.summary.items()
    }
    if job.problems:
        raise DefinitionError(f"saga {spec.name} v{spec.version}", job.problems)
    try:
        return SagaDefinition(
            name=spec.name,
            version=spec.version,
            steps=tuple(steps),
            stages=tuple(tuple(s.name for s in stage) for stage in stages),
            check_input=_input_check(spec.input),
            summarize=_summarizer({k: v for k, v in summary.items() if v is not None}),
        )
    except ValueError as exc:  # a rule of the core's the checks above do not know of
        raise DefinitionError(
            f"saga {spec.name} v{spec.version}", [Problem((), str(exc))]
        ) from None


def _stage_places(spec: DefinitionSpec) -> list[tuple[list[Place], list[StepSpec]]]:
    """Each stage's steps with their places in the document."""
    return [
        (
            [("steps", i, "parallel", j) for j in range(len(s.parallel))]
            if isinstance(s, GroupSpec)
            else [("steps", i)],
            s.parallel if isinstance(s, GroupSpec) else [s],
        )
        for i, s in enumerate(spec.steps)
    ]


def _check_pivot(spec: DefinitionSpec, job: _Compiling) -> None:
    """The pivot rule: once a step that cannot be undone may have run, nothing can be
    undone, so no step beside it or after it may have a compensation."""
    pivot: str | None = None
    for places, stage in _stage_places(spec):
        pivot = pivot or next((s.name for s in stage if s.compensation is None), None)
        for loc, step in zip(places, stage, strict=True):
            if pivot is not None and step.compensation is not None:
                job.found(
                    (*loc, "compensation"),
                    f"{step.name} runs after or beside {pivot} (which cannot be undone) and "
                    "so must not have compensations either",
                )


def _reply_of(
    action: ActionSpec, http: ParticipantSpec | None, step: StepSpec, loc: Place, job: _Compiling
) -> str | None:
    """The reply type that means the action was done (None: a problem found)."""
    before = len(job.problems)
    contract = job.catalogue.contract(step.participant)
    if contract is not None:  # a registered participant: its contracts are known
        if action.command not in contract.commands:
            job.found(
                (*loc, "command"),
                f"{step.participant} takes no command {action.command!r} "
                f"(its commands: {', '.join(sorted(contract.commands))})",
            )
        if action.reply not in contract.replies:
            job.found(
                (*loc, "reply"),
                f"{action.reply!r} is not a reply of {step.participant} "
                f"({', '.join(sorted(contract.replies))})",
            )
    if http is None:
        if action.reply is None:
            job.found((*loc, "reply"), "reply is required (the type that means success)")
        return action.reply if len(job.problems) == before else None
    if action.reply is not None:
        job.found(
            (*loc, "reply"),
            f"{step.participant} is an HTTP participant: its 2xx answer is the reply, so the "
            "action names none",
        )
    return HTTP_SUCCEEDED if len(job.problems) == before else None


def _reply_model(action: ActionSpec, contract: Contract | None) -> Model | None:
    """The model a reply that means the action was done must match, where one is known."""
    if contract is None or action.reply is None:
        return None
    return contract.replies.get(action.reply)


def _compile_step(
    step: StepSpec,
    *,
    earlier: frozenset[str],
    http: ParticipantSpec | None,
    loc: Place,
    job: _Compiling,
) -> StepDefinition | None:
    """The step the core runs, or None when problems were found (in `job`)."""
    before = len(job.problems)
    condition = None
    if step.when is not None:
        try:
            condition = Condition(step.when)
        except ConditionError as exc:
            job.found((*loc, "when"), str(exc))
        else:
            _check_reads(condition.paths, earlier, (*loc, "when"), job)
    if step.timeout <= timedelta(0):
        job.found((*loc, "timeout"), "must be more than 0")
    elif http is not None and http.http.timeout >= step.timeout:
        job.found(
            (*loc, "timeout"),
            f"the step's timeout ({step.timeout}) must be longer than its participant's "
            f"HTTP timeout ({http.http.timeout}), or each try times out before its call does",
        )
    contract = job.catalogue.contract(step.participant)
    command = _builder(step.action, contract, earlier, (*loc, "action"), job)
    success = _reply_of(step.action, http, step, (*loc, "action"), job)
    compensation = compensated = None
    if step.compensation is not None:
        # A compensation may read the step's own result, optionally: it also runs after
        # its step timed out, with no result.
        compensation = _builder(
            step.compensation,
            contract,
            earlier | {step.name},
            (*loc, "compensation"),
            job,
            own=step.name,
        )
        compensated = _reply_of(step.compensation, http, step, (*loc, "compensation"), job)
    if len(job.problems) > before or command is None or success is None:
        return None
    try:
        return StepDefinition(
            name=step.name,
            participant=step.participant,
            command=command,
            success=success,
            success_model=_reply_model(step.action, contract),
            compensation=compensation,
            compensated=compensated,
            compensated_model=(
                _reply_model(step.compensation, contract) if step.compensation else None
            ),
            condition=_judge(condition) if condition else _always,
            timeout=step.timeout,
            retry=step.retry.policy(),
            compensation_retry=step.compensation_retry.policy(),
        )
    except ValueError as exc:  # a rule of the core's the checks above do not know of
        job.found(loc, str(exc))
        return None


def _leaves(source: Any, loc: Place) -> list[tuple[Place, Any]]:
    """Every value in a template that is not a list or an object, with its place."""
    if isinstance(source, dict):
        return [leaf for k, v in source.items() for leaf in _leaves(v, (*loc, str(k)))]
    if isinstance(source, list):
        return [leaf for i, v in enumerate(source) for leaf in _leaves(v, (*loc, i))]
    return [(loc, source)]


def _template(
    source: Any, *, earlier: frozenset[str], loc: Place, job: _Compiling, own: str | None = None
) -> Template | None:
    """The template, or None when problems were found (in `job`): each of its values is
    checked on its own, so that each problem is found, at its place."""
    before = len(job.problems)
    for place, leaf in _leaves(source, loc):
        try:
            part = Template.compile(leaf)
        except PathError as exc:
            job.found(place, str(exc))
        else:
            _check_reads(part.paths, earlier, place, job, own=own)
    return Template.compile(source) if len(job.problems) == before else None


def _check_reads(
    paths: Sequence[Path],
    earlier: frozenset[str],
    loc: Place,
    job: _Compiling,
    *,
    own: str | None = None,
) -> None:
    for path in paths:
        if path.root == "steps" and path.step not in earlier:
            job.found(
                loc,
                f"{path.text!r} reads step {path.step!r}, which is not an earlier step (no "
                "such step, or one that runs later or beside this one)",
            )
        if own is not None and path.step == own and not path.optional:
            job.found(
                loc,
                f"{path.text!r} must end in `| optional`: a compensation also runs after its "
                "step timed out, when the step has no result",
            )
        fields = job.input_fields
        if path.root == "input" and fields is not None:
            name = path.segments[0] if path.segments else None
            if isinstance(name, str) and name not in fields:
                job.found(
                    loc,
                    f"{path.text!r} reads input field {name!r}, which the input schema does "
                    "not allow",
                )


def _builder(
    action: ActionSpec,
    contract: Contract | None,
    earlier: frozenset[str],
    loc: Place,
    job: _Compiling,
    *,
    own: str | None = None,
) -> CommandBuilder | None:
    template = _template(action.input, earlier=earlier, loc=(*loc, "input"), job=job, own=own)
    if template is None:
        return None
    model = contract.commands.get(action.command) if contract is not None else None

    def build(state: SagaState) -> Command:
        try:
            payload = template.render(context_of(state))
            if model is not None:  # a command of a registered contract: checked by it
                payload = model.model_validate(payload).model_dump(mode="json")
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
        problems = [_problem(e) for e in validator.iter_errors(saga_input)]
        if problems:
            raise InputError(
                sorted(problems, key=lambda p: [(isinstance(s, str), s) for s in p.loc])
            )
        return dict(saga_input)

    return check


def _problem(error: jsonschema.ValidationError) -> Problem:
    """The error at its place; a missing property's place is the property's own."""
    loc: Place = tuple(error.absolute_path)
    if error.validator == "required" and isinstance(error.validator_value, list):
        missing = [
            f for f in error.validator_value if error.message == f"{f!r} is a required property"
        ]
        loc = (*loc, *missing[:1])
    return Problem(loc, _without_value(error))


def _without_value(error: jsonschema.ValidationError) -> str:
    """jsonschema's message without the value it judges, which it starts with (a value
    may be a secret, or a megabyte): `'x…' is too long` reads `the value is too long`."""
    shown = repr(error.instance)
    if error.message.startswith(shown):
        return "the value" + error.message.removeprefix(shown)
    return error.message


def context_of(state: SagaState) -> dict[str, Any]:
    """What paths see of a saga: its input, its steps' results and statuses, itself."""
    return {
        "input": state.input,
        "steps": {
            s.name: {"status": s.status, "result": state.results.get(s.name)} for s in state.steps
        },
        "saga": {"id": state.saga_id, "type": state.saga_type, "customer": state.customer},
    }
