"""Saga definitions: the steps of a saga as data, each with its command and compensation."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from contracts.messages import Message
from contracts.topology import Participant
from saga.core.state import SagaState

CommandBuilder = Callable[[SagaState], Message]
Condition = Callable[[SagaState], bool]
Summary = Callable[[SagaState], Mapping[str, Any]]


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
    """

    name: str
    participant: Participant
    command: CommandBuilder
    success: type[Message]
    compensation: CommandBuilder | None = None
    compensated: type[Message] | None = None
    condition: Condition = _always

    def __post_init__(self) -> None:
        if (self.compensation is None) != (self.compensated is None):
            raise ValueError(f"step {self.name}: compensation and compensated go together")


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

    def step(self, name: str) -> StepDefinition:
        """The step of that name."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"saga {self.name} has no step {name!r}")

    def index(self, name: str) -> int:
        """The position of the named step."""
        return [s.name for s in self.steps].index(name)
