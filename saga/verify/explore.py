"""Every path of a saga definition, walked through the pure core: for each action the saga
tries, each behaviour a participant can have; exhaustive where the space is small, else
every path with few faults and a seeded sample of the rest, with how much was covered."""

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from saga.core.definition import SagaDefinition
from saga.core.events import Action, EventRecord
from saga.core.state import SagaState
from saga.verify.invariants import blamed_steps, check_end, check_fold, end_of
from saga.verify.script import (
    OK,
    Behaviour,
    Choice,
    Script,
    attempts_of,
    behaviours,
)
from saga.verify.world import Need, Replies, World

# Paths walked whole before the space counts as too large (per input).
MAX_PATHS: Final = 2000
# Paths sampled (per input) when it is too large.
SAMPLES: Final = 300


@dataclass(frozen=True)
class SagaPath:
    """One walk from start to end: the input, the behaviours met in order, how it ended."""

    input_name: str
    choices: tuple[Choice, ...]
    state: SagaState
    records: tuple[EventRecord, ...]
    end: str
    blamed: frozenset[str]
    violations: tuple[str, ...]
    inputs: int
    # What the participants did: the steps that took effect (or may have: `maybe`), and
    # those whose compensation took effect.
    took_effect: frozenset[str] = frozenset()
    maybe: frozenset[str] = frozenset()
    undone: frozenset[str] = frozenset()

    @property
    def events(self) -> list[str]:
        """The types of the saga's events, in order."""
        return [r.event.type for r in self.records]

    @property
    def faults(self) -> int:
        """How many actions met anything but ok."""
        return sum(c.behaviour.faulty for c in self.choices)

    def __str__(self) -> str:
        shown = [str(c) for c in self.choices if c.behaviour.faulty or c.action == "execute"]
        return f"[{self.input_name}] " + " -> ".join(shown)


@dataclass(frozen=True)
class Coverage:
    """How much of one input's space was walked."""

    input_name: str
    exhaustive: bool
    walked: int
    # With the space too large: every path with at most this many faults was walked, of
    # about `estimate` paths (the growth from one fault bound to the next, carried on).
    fault_bound: int | None = None
    estimate: int | None = None
    sampled: int = 0
    seed: int | None = None

    def __str__(self) -> str:
        if self.exhaustive:
            return f"[{self.input_name}] every path walked: {self.walked}"
        return (
            f"[{self.input_name}] too many paths to walk whole (about {self.estimate} with up "
            f"to {(self.fault_bound or 0) + 1} faults): every path with at most "
            f"{self.fault_bound} faults walked ({self.walked}), {self.sampled} more sampled "
            f"at random (seed {self.seed})"
        )


def walk(
    definition: SagaDefinition,
    saga_input: Mapping[str, Any],
    replies: Replies,
    script: Script,
    *,
    input_name: str = "input",
) -> SagaPath:
    """The one path a script gives (an action it does not name answers ok every time)."""
    world = World.start(definition, saga_input, replies)
    while (need := world.run()) is not None:
        world.choose(need, script.get((need.step, need.action), OK))
    found = _path(world, input_name)
    return replace(found, violations=(*found.violations, *check_fold(found.records, found.state)))


def paths(
    definition: SagaDefinition,
    saga_input: Mapping[str, Any],
    replies: Replies,
    *,
    input_name: str = "input",
    max_faults: int | None = None,
) -> Iterator[SagaPath]:
    """Every path with at most `max_faults` faulty actions (None: every path), depth first,
    each checked, its log's fold too."""
    for world in _walk(World.start(definition, saga_input, replies), max_faults):
        found = _path(world, input_name)
        yield replace(
            found, violations=(*found.violations, *check_fold(world.records, world.state))
        )


def explore(
    definition: SagaDefinition,
    saga_input: Mapping[str, Any],
    replies: Replies,
    *,
    input_name: str = "input",
    max_paths: int = MAX_PATHS,
    samples: int = SAMPLES,
    seed: int = 0,
) -> tuple[list[SagaPath], Coverage]:
    """The paths of one input: all of them if there are at most `max_paths`; else all with
    as many faults as fit, and `samples` more drawn at random (seeded). Each is checked,
    but for the fold of its log (check_fold: it costs as much as the path)."""
    start = World.start(definition, saga_input, replies)
    bound, walked, before = 0, _at_most(start, 0, max_paths, input_name) or [], 1
    while True:
        # Each fault more multiplies the paths about as the last one did: a walk that
        # would surely be cut short is not begun.
        estimate = len(walked) * len(walked) // before
        if estimate > max_paths * 4:
            break
        more = _at_most(start, bound + 1, max_paths, input_name)
        if more is None:
            estimate = max(estimate, max_paths + 1)
            break
        if len(more) == len(walked):  # no path has more faults: that was every path
            return walked, Coverage(input_name, exhaustive=True, walked=len(walked))
        bound, walked, before = bound + 1, more, len(walked)
    rng = random.Random(seed)
    sampled = [_path(_sampled(start, rng), input_name) for _ in range(samples)]
    return [*walked, *sampled], Coverage(
        input_name,
        exhaustive=False,
        walked=len(walked),
        fault_bound=bound,
        estimate=estimate,
        sampled=samples,
        seed=seed,
    )


def _at_most(
    start: World, max_faults: int | None, limit: int, input_name: str
) -> list[SagaPath] | None:
    """Every path with at most `max_faults` faults, or None if there are more than `limit`."""
    found: list[SagaPath] = []
    for world in _walk(start, max_faults):
        if len(found) == limit:
            return None
        found.append(_path(world, input_name))
    return found


def _options(world: World, need: Need, max_faults: int | None) -> tuple[Behaviour, ...]:
    faults = sum(b.faulty for _, _, b in world.chosen)
    if max_faults is not None and faults >= max_faults:
        return (OK,)
    step = world.definition.step(need.step)
    return behaviours(attempts_of(step, need.action))


def _walk(start: World, max_faults: int | None) -> Iterator[World]:
    """Every finished world reachable from `start`, depth first (prefixes are shared)."""
    stack = [start.clone()]
    while stack:
        world = stack.pop()
        need = world.run()
        if need is None:
            yield world
            continue
        branches = []
        for behaviour in _options(world, need, max_faults):
            branch = world.clone()
            branch.choose(need, behaviour)
            branches.append(branch)
        stack.extend(reversed(branches))


def _sampled(start: World, rng: random.Random) -> World:
    """One path drawn at random: each action ok half the time, else a fault."""
    world = start.clone()
    while (need := world.run()) is not None:
        options = _options(world, need, None)
        faulty = [b for b in options if b.faulty]
        world.choose(need, OK if rng.random() < 0.5 else rng.choice(faulty))
    return world


def _path(world: World, input_name: str) -> SagaPath:
    violations = (*world.violations, *check_end(world))
    return SagaPath(
        input_name=input_name,
        choices=tuple(Choice(s, a, b, _tries(world.state, s, a)) for s, a, b in world.chosen),
        state=world.state,
        records=tuple(world.records),
        end=end_of(world),
        blamed=frozenset(blamed_steps(world)) if world.state.status == "failed" else frozenset(),
        violations=tuple(violations),
        inputs=world.inputs,
        took_effect=frozenset(n for n, e in world.effects.items() if e == "done"),
        maybe=frozenset(n for n, e in world.effects.items() if e == "maybe"),
        undone=frozenset(world.undone),
    )


def _tries(state: SagaState, step: str, action: Action) -> int:
    current = state.step(step)
    return current.attempts if action == "execute" else current.compensation_attempts
