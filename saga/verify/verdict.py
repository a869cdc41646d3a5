"""A definition verified: its paths walked for each input, gathered into a table of end
states (with the shortest path to each), the invariants broken, and the failed ends the
author did not accept."""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Final

from saga.core.definition import SagaDefinition
from saga.verify.explore import MAX_PATHS, SAMPLES, Coverage, SagaPath, explore
from saga.verify.invariants import check_fold
from saga.verify.samples import SampleInput
from saga.verify.world import Replies

# The order ends are listed in: the good ones first.
_RANK: Final = {"completed": 0, "compensated": 1}


@dataclass(frozen=True)
class EndState:
    """One way the saga can end, how many paths walked end so, the shortest of them, and
    whether the author accepts it (a `failed` end is accepted when every step it is put
    down to is marked acceptable)."""

    end: str
    paths: int
    shortest: SagaPath
    acceptable: bool


@dataclass(frozen=True)
class Broken:
    """An invariant that breaks, and the shortest path on which it does."""

    invariant: str
    paths: int
    shortest: SagaPath


@dataclass(frozen=True)
class Verdict:
    """What verifying a definition found."""

    name: str
    version: int
    coverage: tuple[Coverage, ...]
    ends: tuple[EndState, ...]
    broken: tuple[Broken, ...]

    @property
    def unaccepted(self) -> tuple[EndState, ...]:
        """The failed ends no mark accepts."""
        return tuple(e for e in self.ends if not e.acceptable)

    @property
    def ok(self) -> bool:
        """No invariant broke and every failed end is accepted."""
        return not self.broken and not self.unaccepted

    @property
    def walked(self) -> int:
        """How many paths were walked, over every input."""
        return sum(c.walked + c.sampled for c in self.coverage)

    def to_json(self) -> dict[str, Any]:
        """The verdict as data, for tools."""
        return {
            "name": self.name,
            "version": self.version,
            "ok": self.ok,
            "paths": self.walked,
            "coverage": [
                {
                    "input": c.input_name,
                    "exhaustive": c.exhaustive,
                    "walked": c.walked,
                    "fault_bound": c.fault_bound,
                    "sampled": c.sampled,
                    "seed": c.seed,
                    "text": str(c),
                }
                for c in self.coverage
            ],
            "ends": [
                {
                    "end": e.end,
                    "paths": e.paths,
                    "acceptable": e.acceptable,
                    "shortest": _path_json(e.shortest),
                }
                for e in self.ends
            ],
            "broken": [
                {"invariant": b.invariant, "paths": b.paths, "shortest": _path_json(b.shortest)}
                for b in self.broken
            ],
        }


def _path_json(path: SagaPath) -> dict[str, Any]:
    return {
        "input": path.input_name,
        "text": str(path),
        "choices": [
            {"step": c.step, "action": c.action, "behaviour": str(c.behaviour)}
            for c in path.choices
        ],
        "events": [r.event.type for r in path.records],
    }


def verify(
    definition: SagaDefinition,
    inputs: Sequence[SampleInput],
    replies: Replies,
    *,
    accept_failed: Collection[str] = (),
    max_paths: int = MAX_PATHS,
    samples: int = SAMPLES,
    seed: int = 0,
) -> Verdict:
    """Walk the definition's paths for each input (the budgets shared between them)."""
    found: list[SagaPath] = []
    coverage: list[Coverage] = []
    share = max(1, len(inputs))
    for sample in inputs:
        walked, covered = explore(
            definition,
            sample.value,
            replies,
            input_name=sample.name,
            max_paths=max(1, max_paths // share),
            samples=samples // share,
            seed=seed,
        )
        found += walked
        coverage.append(covered)
    ends = _ends(found, frozenset(accept_failed))
    broken = _broken(found)
    # The fold of a log costs as much as its path: it is checked on each end's shortest.
    for end in ends:
        for problem in check_fold(end.shortest.records, end.shortest.state):
            broken.append(Broken(problem, 1, end.shortest))
    return Verdict(definition.name, definition.version, tuple(coverage), ends, tuple(broken))


def _shortness(path: SagaPath) -> tuple[int, int, int]:
    return (path.faults, len(path.choices), path.inputs)


def _ends(found: list[SagaPath], accepted: frozenset[str]) -> tuple[EndState, ...]:
    by_end: dict[str, list[SagaPath]] = {}
    for path in found:
        by_end.setdefault(path.end, []).append(path)
    ends = [
        EndState(
            end=end,
            paths=len(walked),
            shortest=min(walked, key=_shortness),
            acceptable=all(bool(p.blamed) and p.blamed <= accepted for p in walked)
            if end.startswith("failed")
            else True,
        )
        for end, walked in by_end.items()
    ]
    return tuple(sorted(ends, key=lambda e: (_RANK.get(e.end, 2), e.end)))


def _broken(found: list[SagaPath]) -> list[Broken]:
    by_invariant: dict[str, list[SagaPath]] = {}
    for path in found:
        for violation in path.violations:
            by_invariant.setdefault(violation, []).append(path)
    return [
        Broken(invariant, len(walked), min(walked, key=_shortness))
        for invariant, walked in sorted(by_invariant.items())
    ]
