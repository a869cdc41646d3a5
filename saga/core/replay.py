"""What replaying a failed saga means, and why a saga past its pivot failed, in words."""

from dataclasses import dataclass
from typing import Literal

from saga.core.definition import SagaDefinition
from saga.core.reasons import INVALID_STEP_INPUT
from saga.core.state import SagaState, StepState


@dataclass(frozen=True)
class ReplayPlan:
    """What `saga replay` does to one failed saga.

    `undo`: nothing that cannot be undone took effect, and some compensations failed:
    those (`retry`) are tried again under a fresh idempotency key, then the saga goes on
    undoing. `finish`: a step that cannot be undone has (or may have) taken effect, so
    nothing is undone; the saga goes forward: each such step whose effect is unknown
    (`ask`) is sent again under its own idempotency key, and the participant's answer
    decides (it took effect: on to the next steps; it did not: the steps before it are
    undone); each that failed outright (`retry`) is tried again under a fresh key.
    """

    direction: Literal["undo", "finish"]
    ask: tuple[str, ...] = ()
    retry: tuple[str, ...] = ()


@dataclass(frozen=True)
class Irreversible:
    """A step that cannot be undone and has, or may have, taken effect."""

    step: str
    certain: bool


def irreversible(definition: SagaDefinition, state: SagaState) -> list[Irreversible]:
    """The saga's steps without compensation that took effect or may have, in order."""
    found = []
    for step in state.steps:
        if definition.step(step.name).compensation is not None:
            continue
        if step.status == "succeeded":
            found.append(Irreversible(step.name, certain=True))
        elif _unknown(step):
            found.append(Irreversible(step.name, certain=False))
    return found


def replay_plan(definition: SagaDefinition, state: SagaState) -> ReplayPlan | None:
    """What replaying the saga would do; None if it cannot be replayed (it has not failed)."""
    if state.status != "failed":
        return None
    if irreversible(definition, state):
        forward = [
            s for s in state.steps if definition.step(s.name).compensation is None and _open(s)
        ]
        if not forward:
            return None
        return ReplayPlan(
            "finish",
            ask=tuple(s.name for s in forward if _unknown(s)),
            retry=tuple(s.name for s in forward if not _unknown(s)),
        )
    failed = tuple(s.name for s in state.steps if s.status == "compensation_failed")
    return ReplayPlan("undo", retry=failed) if failed else None


def past_pivot_reason(
    definition: SagaDefinition,
    state: SagaState,
    *,
    failed: str,
    reason: str,
    answer_unclear: bool,
) -> str:
    """Why a saga past its pivot failed and what the operator can do, as sentences.

    `state` is the saga once `failed` is recorded as failed (for `reason`);
    `answer_unclear`: the failure itself left open whether the step took effect (else an
    earlier try did)."""
    done = irreversible(definition, state)
    step = state.step(failed)
    others = [d for d in done if d.step != failed]
    if _unknown(step) and definition.step(failed).compensation is None:
        why = (
            f"{failed} failed ({reason}) but may have taken effect"
            + (
                ", as its answer does not say whether it did,"
                if answer_unclear
                else ", as an earlier try of it may have worked,"
            )
            + " and it cannot be undone"
        )
    else:
        why = f"{failed} failed ({reason})"
    if others:
        why += " after " + _and(
            [
                f"{d.step}, which cannot be undone, "
                + ("took effect" if d.certain else "may have taken effect")
                for d in others
            ]
        )
    plan = replay_plan(definition, state.model_copy(update={"status": "failed"}))
    assert plan is not None and plan.direction == "finish"
    return f"{why}, so nothing was undone. {_what_to_do(definition, state, plan)}"


def _what_to_do(definition: SagaDefinition, state: SagaState, plan: ReplayPlan) -> str:
    sentences = []
    if plan.ask:
        whom = _and(sorted({definition.step(s).participant for s in plan.ask}))
        asked = _and(list(plan.ask))
        alone = (
            len(plan.ask) == 1
            and not plan.retry
            and not [d for d in irreversible(definition, state) if d.step not in plan.ask]
        )
        sentences.append(
            f"Find out from {whom} whether {asked} took effect (repair its records if they "
            f"are wrong); then saga replay sends {asked} again under the same idempotency "
            "key and goes on from the answer: "
            + (
                "it finishes the saga if it took effect, and undoes the steps before it if "
                "it did not."
                if alone
                else "forward to the end if it took effect; if it did not, and nothing else "
                "that cannot be undone did, the steps before it are undone."
            )
        )
    unbuildable = [s for s in plan.retry if state.step(s).reason == INVALID_STEP_INPUT]
    if unbuildable:
        sentences.append(
            f"The command of {_and(unbuildable)} cannot be made from this saga's data, and a "
            "replay does not change that: settle it with its participant by hand."
        )
    others = [s for s in plan.retry if s not in unbuildable]
    if others:
        sentences.append(
            f"Fix the cause, then saga replay tries {_and(others)} again under a new "
            "idempotency key and goes on to the end."
        )
    return " ".join(sentences)


def _unknown(step: StepState) -> bool:
    """A step whose effect nobody knows: still out, or failed after a try that may have
    worked."""
    return step.status == "running" or (step.status == "failed" and step.effect_unknown)


def _open(step: StepState) -> bool:
    return step.status in ("running", "failed")


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
