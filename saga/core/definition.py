"""Saga definitions as the core runs them: each step's command, compensation and rules.

A definition document (`saga.core.document`) compiles to one of these; the core needs
only what is here: functions of the saga's state that build each command and judge each
condition, and the names of the replies that mean success.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from contracts.topology import Participant
from saga.core.policy import COMPENSATION_RETRY, STEP_RETRY, STEP_TIMEOUT, RetryPolicy
from saga.core.problems import Place, Problem
from saga.core.state import SagaState


@dataclass(frozen=True)
class Command:
    """A command to send: its wire type and its payload, as JSON-ready data."""

    type: str
    payload: dict[str, Any]


class BuildError(ValueError):
    """A step's command or condition cannot be made for this saga (a path that leads
    nowhere, a payload its contract refuses): the step fails, nothing is sent."""


class InputError(ValueError):
    """A saga's input does not match its definition's input schema: every problem, each
    with its place in the input."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{_in_input(p.loc)}: {p.msg}" for p in self.problems))


def _in_input(loc: Place) -> str:
    """`input.items[0].quantity`: a place in the input as a path of the path language."""
    return "input" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)


CommandBuilder = Callable[[SagaState], Command]
Condition = Callable[[SagaState], bool]
Summary = Callable[[SagaState], Mapping[str, Any]]
InputCheck = Callable[[Mapping[str, Any]], dict[str, Any]]


def _always(_: SagaState) -> bool:
    return True


def _nothing(_: SagaState) -> Mapping[str, Any]:
    return {}


def _any_object(saga_input: Mapping[str, Any]) -> dict[str, Any]:
    return dict(saga_input)


@dataclass(frozen=True)
class CheckedInput:
    """An input a definition's check accepted, as the saga keeps it (`SagaDefinition.checked`):
    a start with the definition whose check it was does not check it again."""

    value: dict[str, Any]
    checked_by: InputCheck = field(repr=False, compare=False)


@dataclass(frozen=True)
class StepDefinition:
    """One local transaction of a saga and, if it can be undone, how.

    `command` builds the command from the saga's state (its input and the results
    of earlier steps); the step succeeds on a reply of type `success` (the name of a
    reply type). A step whose `condition` is false for a saga is skipped; either may
    raise BuildError, which fails the step. A step with no `compensation` is
    never undone: put such steps last (after the pivot).

    Each command is awaited for `timeout`; a timeout or a transient failure is
    retried by `retry` (the compensation by `compensation_retry`).
    """

    name: str
    participant: Participant
    command: CommandBuilder
    success: str
    compensation: CommandBuilder | None = None
    compensated: str | None = None
    success_model: type[BaseModel] | None = None
    compensated_model: type[BaseModel] | None = None
    condition: Condition = _always
    timeout: timedelta = STEP_TIMEOUT
    retry: RetryPolicy = STEP_RETRY
    compensation_retry: RetryPolicy = COMPENSATION_RETRY

    def __post_init__(self) -> None:
        if (self.compensation is None) != (self.compensated is None):
            raise ValueError(f"step {self.name}: compensation and compensated go together")
        if self.timeout <= timedelta(0):
            raise ValueError(f"step {self.name}: the timeout must be positive")


@dataclass(frozen=True)
class SagaDefinition:
    """A saga type: its name, version, steps in order, and how its input is checked.

    `stages` groups the steps: the steps of one stage run at once (a parallel group)
    and the saga goes on when all of them are done; stages run one after another. By
    default every step is a stage of its own. `check_input` returns the input as the
    saga keeps it, or raises InputError.
    """

    name: str
    version: int
    steps: tuple[StepDefinition, ...]
    check_input: InputCheck = field(default=_any_object)
    summarize: Summary = field(default=_nothing)
    stages: tuple[tuple[str, ...], ...] = ()
    _by_name: dict[str, StepDefinition] = field(init=False, repr=False, compare=False)
    _stage_of: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"saga {self.name}: step names must be unique, got {names}")
        if not names:
            raise ValueError(f"saga {self.name}: a saga needs at least one step")
        if not self.stages:
            object.__setattr__(self, "stages", tuple((n,) for n in names))
        if [n for stage in self.stages for n in stage] != names or not all(self.stages):
            raise ValueError(f"saga {self.name}: stages must hold every step once, in order")
        by_name = {s.name: s for s in self.steps}
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(
            self, "_stage_of", {n: i for i, stage in enumerate(self.stages) for n in stage}
        )
        # The pivot: once a step that cannot be undone may have run, nothing can be
        # undone, so no step beside it or after it may expect to be.
        pivot = next((s.name for s in self.steps if s.compensation is None), None)
        if pivot is not None:
            later = [n for stage in self.stages[self._stage_of[pivot] :] for n in stage]
            if any(by_name[n].compensation is not None for n in later):
                raise ValueError(
                    f"saga {self.name}: steps after or beside {pivot} (which cannot be "
                    "undone) must not have compensations either"
                )

    def checked(self, saga_input: Mapping[str, Any]) -> CheckedInput:
        """The input checked once (for an answer before a start that would check it
        again); raises InputError as `check_input` does."""
        return CheckedInput(self.check_input(saga_input), self.check_input)

    def input_of(self, saga_input: "Mapping[str, Any] | CheckedInput") -> dict[str, Any]:
        """The input as the saga keeps it: checked now, unless this definition's check
        accepted it already."""
        if isinstance(saga_input, CheckedInput):
            if saga_input.checked_by is self.check_input:
                return saga_input.value
            saga_input = saga_input.value  # another definition's check took it
        return self.check_input(saga_input)

    def step(self, name: str) -> StepDefinition:
        """The step of that name."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"saga {self.name} has no step {name!r}") from None

    def stage_of(self, name: str) -> int:
        """The position of the named step's stage."""
        return self._stage_of[name]

    def stage(self, index: int) -> tuple[StepDefinition, ...]:
        """The steps of one stage."""
        return tuple(self._by_name[n] for n in self.stages[index])

    def with_policy(
        self,
        *,
        step_timeout: timedelta | None = None,
        max_attempts: int | None = None,
        retry_backoff: float | None = None,
        compensation_max_attempts: int | None = None,
    ) -> "SagaDefinition":
        """The same saga with the operator's overrides applied to every step."""

        def adjust(step: StepDefinition) -> StepDefinition:
            retry, compensation_retry = step.retry, step.compensation_retry
            if max_attempts is not None:
                retry = replace(retry, max_attempts=max_attempts)
            if retry_backoff is not None:
                retry = replace(retry, backoff=retry_backoff)
                compensation_retry = replace(compensation_retry, backoff=retry_backoff)
            if compensation_max_attempts is not None:
                compensation_retry = replace(
                    compensation_retry, max_attempts=compensation_max_attempts
                )
            return replace(
                step,
                timeout=step_timeout or step.timeout,
                retry=retry,
                compensation_retry=compensation_retry,
            )

        return replace(self, steps=tuple(adjust(s) for s in self.steps))
