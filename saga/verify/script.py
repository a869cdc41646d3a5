"""What a participant does with each try of a step or a compensation: the outcomes a path
is made of, and the behaviours (a sequence of outcomes, one a try) the explorer chooses."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from saga.core.definition import StepDefinition
from saga.core.events import Action


class Try(StrEnum):
    """What happens to one try of a command (a participant that keeps the protocol: a
    try of a key it has answered gets that answer again, whatever is scripted)."""

    OK = "ok"
    # A business answer that will not change: the step is refused (or the compensation).
    REFUSED = "refused"
    # Not for now (the participant's dependency is away): no effect, try again.
    TRANSIENT = "transient failure"
    # The command never reaches the participant: no effect, no reply, the timeout fires.
    LOST_COMMAND = "timeout before the effect"
    # The participant does it, its reply is lost: the timeout fires.
    LOST_REPLY = "timeout after the effect"
    # The participant cannot tell whether it took effect (a transient failure that says so).
    EFFECT_UNKNOWN = "effect unknown"
    # Done, but the reply comes after the timeout fired.
    LATE = "late reply"
    # Done, and the reply comes twice.
    DUPLICATE = "duplicate reply"


# The tries that do the work (or return the answer the participant kept).
PROCESSED: Final = frozenset({Try.OK, Try.LOST_REPLY, Try.LATE, Try.DUPLICATE})


@dataclass(frozen=True)
class Behaviour:
    """A participant's answers to an action's tries, in order; every try after them is ok."""

    tries: tuple[Try, ...] = ()

    @property
    def faulty(self) -> bool:
        """Anything but an answer of ok to the first try."""
        return bool(self.tries)

    def at(self, attempt: int) -> Try:
        """The outcome of try `attempt` (from 1)."""
        return self.tries[attempt - 1] if attempt <= len(self.tries) else Try.OK

    def describe(self, tries: int | None = None) -> str:
        """What the participant answered, to the `tries` the saga made (default: as many
        as the behaviour names, then ok if there are more)."""
        shown = self.tries if tries is None else self.tries[:tries]
        runs: list[tuple[Try, int]] = []
        for outcome in shown:
            if runs and runs[-1][0] is outcome:
                runs[-1] = (outcome, runs[-1][1] + 1)
            else:
                runs.append((outcome, 1))
        words = [f"{t.value} x{n}" if n > 1 else t.value for t, n in runs]
        more = tries is None or tries > len(shown)
        ends = bool(shown) and shown[-1] in (Try.REFUSED, *PROCESSED)
        if more and not ends:
            words.append(Try.OK.value if not shown else "then ok")
        return ", ".join(words)

    def __str__(self) -> str:
        return self.describe()


OK: Final = Behaviour()


def behaviours(attempts: int) -> tuple[Behaviour, ...]:
    """Every behaviour the explorer tries for an action given `attempts` tries: ok first,
    then each kind of fault, once and on every try (so that the retries give up)."""
    once = [Behaviour((t,)) for t in Try if t is not Try.OK]
    every = [
        Behaviour((t,) * attempts)
        for t in (Try.TRANSIENT, Try.LOST_COMMAND, Try.LOST_REPLY, Try.EFFECT_UNKNOWN)
    ]
    unique = dict.fromkeys([OK, *once, *every])  # one try: `once` and `every` are alike
    return tuple(unique)


def attempts_of(step: StepDefinition, action: Action) -> int:
    """How many tries the action gets before the saga gives it up."""
    return (step.retry if action == "execute" else step.compensation_retry).max_attempts


@dataclass(frozen=True)
class Choice:
    """One behaviour chosen for one action of one step: a link of a path."""

    step: str
    action: Action
    behaviour: Behaviour
    # How many tries the saga made of the action on the path (None: not known).
    tries: int | None = None

    def __str__(self) -> str:
        what = self.step if self.action == "execute" else f"undo {self.step}"
        return f"{what}: {self.behaviour.describe(self.tries)}"


Script = Mapping[tuple[str, Action], Behaviour]


def script(answers: Mapping[str, Try | Sequence[Try]]) -> dict[tuple[str, Action], Behaviour]:
    """A script from plain names: `{"take_payment": Try.LOST_REPLY, "undo take_payment":
    [Try.REFUSED]}` (a step name is its action, `undo NAME` its compensation)."""
    made: dict[tuple[str, Action], Behaviour] = {}
    for name, tries in answers.items():
        undo = name.startswith("undo ")
        step = name.removeprefix("undo ")
        action: Action = "compensate" if undo else "execute"
        outcomes = (tries,) if isinstance(tries, Try) else tuple(tries)
        made[(step, action)] = Behaviour(outcomes)
    return made
