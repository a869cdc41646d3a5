"""What must hold at the end of every path, and how a path's end is named."""

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from saga.core.definition import SagaDefinition
from saga.core.events import EventRecord, StepCompensated, StepRequested
from saga.core.replay import irreversible
from saga.core.state import FoldError, SagaState, evolve, fold

if TYPE_CHECKING:
    from saga.verify.world import World


def end_of(world: "World") -> str:
    """The end state a path reached: `completed`, `compensated`, or `failed: ...` naming
    why (each compensation that failed, each step that did not finish past the pivot)."""
    state = world.state
    if state.status != "failed":
        return state.status
    return "failed: " + "; ".join(failed_because(world))


def failed_because(world: "World") -> list[str]:
    """Why a failed saga failed, one phrase a cause."""
    causes = [
        f"compensation of {s.name} failed"
        for s in world.state.steps
        if s.status == "compensation_failed"
    ]
    past = [p.step for p in irreversible(world.definition, world.state)]
    if past:
        unfinished = [
            s.name
            for s in world.state.steps
            if world.definition.step(s.name).compensation is None
            and s.status not in ("succeeded", "skipped", "pending")
        ]
        causes += [f"{name} did not finish past the pivot" for name in unfinished]
    return causes or ["no cause found"]


def blamed_steps(world: "World") -> set[str]:
    """The steps a failed end is put down to (what `--accept-failed` names)."""
    state = world.state
    named = {s.name for s in state.steps if s.status == "compensation_failed"}
    if irreversible(world.definition, state):
        named |= {
            s.name
            for s in state.steps
            if world.definition.step(s.name).compensation is None
            and s.status not in ("succeeded", "skipped", "pending")
        }
    return named


def undone_past_the_pivot(
    definition: SagaDefinition, records: Sequence[EventRecord], before: SagaState | None = None
) -> list[str]:
    """Each compensation requested (in `records`, which follow `before`) while a step that
    cannot be undone had, or may have, taken effect."""
    broken: list[str] = []
    state = before
    for record in records:
        event = record.event
        if isinstance(event, StepRequested) and event.action == "compensate" and state:
            past = irreversible(definition, state)
            if past:
                broken.append(
                    f"{event.step} was undone past the pivot ({past[0].step} may have taken effect)"
                )
        state = evolve(state, record)
    return broken


def check_fold(records: Sequence[EventRecord], state: SagaState) -> list[str]:
    """The saga's log folds to the state its decisions reached (or why not)."""
    try:
        return [] if fold(records) == state else ["the log does not fold to the state"]
    except FoldError as exc:
        return [f"the log does not fold: {exc}"]


def check_end(world: "World") -> list[str]:
    """Every invariant the path's end breaks, each in a sentence (but the fold's: it costs
    as much as the path, see check_fold)."""
    state, definition = world.state, world.definition
    broken: list[str] = []
    if not state.terminal:
        return broken  # the world said why already
    if state.pending or state.retries:
        broken.append(f"the saga ended {state.status} still awaiting commands or retries")
    for step in state.steps:
        spec = definition.step(step.name)
        if spec.compensation is not None and step.attempts > spec.retry.max_attempts:
            broken.append(f"{step.name} was tried {step.attempts} times, over its budget")
        if step.compensation_attempts > spec.compensation_retry.max_attempts:
            broken.append(f"{step.name}'s compensation was tried over its budget")
    compensated = Counter(
        r.event.step for r in world.records if isinstance(r.event, StepCompensated)
    )
    broken += [f"{name} was undone {n} times" for name, n in compensated.items() if n > 1]
    broken += [f"{name} was undone twice" for name, keys in world.undone.items() if len(keys) > 1]
    for name, effect in world.effects.items():
        step = state.step(name)
        undone = name in world.undone
        has_compensation = definition.step(name).compensation is not None
        what = "took effect" if effect == "done" else "may have taken effect"
        if state.status == "compensated" and not has_compensation:
            broken.append(f"the saga ended compensated but {name} (the pivot) {what}")
        elif state.status == "compensated" and not undone:
            broken.append(f"{name} {what} and was left undone, yet the saga ended compensated")
        elif state.status == "failed" and has_compensation and not undone:
            excused = step.status == "compensation_failed" or irreversible(definition, state)
            if not excused:
                broken.append(f"{name} {what} and was left undone, and nothing says so")
    if state.status == "completed":
        for step in state.steps:
            if step.status != "skipped" and world.effects.get(step.name) != "done":
                broken.append(f"the saga completed but {step.name} did not take effect")
    return broken
