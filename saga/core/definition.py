"""Saga definitions: the steps of a saga as data, each with its command and compensation."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Final

from pydantic import BaseModel

from contracts.messages import Message
from contracts.topology import Participant
from saga.core.policy import RetryPolicy
from saga.core.state import SagaState

CommandBuilder = Callable[[SagaState], Message]
Condition = Callable[[SagaState], bool]
Summary = Callable[[SagaState], Mapping[str, Any]]


DEFAULT_TIMEOUT: Final = timedelta(seconds=10)
STEP_RETRY: Final = RetryPolicy()
# Undoing must not give up easily: a saga that cannot be undone needs a human.
COMPENSATION_RETRY: Final = RetryPolicy(max_attempts=5)


def _always(_: SagaState) -> bool:
    return True


def _nothing(_: SagaState) -> Mapping[str, Any]:
    return {}


@dataclass(frozen=True)
class StepDefinition:
    """One local transaction of a saga and, if it can be undone, how.

    `command` builds the command from the saga's state (its input and the results
    of earlier steps); the step succeeds on a reply of type `success`. A step whose
    `condition` is false for a saga is skipped. A step with no `compensation` is
    never undone: put such steps last (after the pivot).

    Each command is awaited for `timeout`; a timeout or a transient failure is
    retried by `retry` (the compensation by `compensation_retry`).
    """

    name: str
    participant: Participant
    command: CommandBuilder
    success: type[Message]
    compensation: CommandBuilder | None = None
    compensated: type[Message] | None = None
    condition: Condition = _always
    timeout: timedelta = DEFAULT_TIMEOUT
    retry: RetryPolicy = STEP_RETRY
    compensation_retry: RetryPolicy = COMPENSATION_RETRY

    def __post_init__(self) -> None:
        if (self.compensation is None) != (self.compensated is None):
            raise ValueError(f"step {self.name}: compensation and compensated go together")
        if self.timeout <= timedelta(0):
            raise ValueError(f"step {self.name}: the timeout must be positive")


@dataclass(frozen=True)
class SagaDefinition:
    """A saga type: its name, version, input model and ordered steps."""

    name: str
    version: int
    input_model: type[BaseModel]
    steps: tuple[StepDefinition, ...]
    summarize: Summary = field(default=_nothing)

    def __post_init__(self) -> None:
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"saga {self.name}: step names must be unique, got {names}")
        if not names:
            raise ValueError(f"saga {self.name}: a saga needs at least one step")
        pivot = next((s.name for s in self.steps if s.compensation is None), None)
        if pivot is not None:
            after = self.steps[names.index(pivot) + 1 :]
            if any(s.compensation is not None for s in after):
                raise ValueError(
                    f"saga {self.name}: steps after {pivot} (which cannot be undone) "
                    "must not have compensations either"
                )

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

    def step(self, name: str) -> StepDefinition:
        """The step of that name."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"saga {self.name} has no step {name!r}")

    def index(self, name: str) -> int:
        """The position of the named step."""
        return [s.name for s in self.steps].index(name)
