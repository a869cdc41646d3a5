"""Properties of sagas with steps that cannot be undone, side by side and one after another,
over arbitrary answers, late answers, timeouts, retries, cancels and replays (hypothesis)."""

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.messages import CommandFailed
from saga.core.decide import CancelSaga, ReplaySaga, ReplyReceived, TimerFired
from saga.core.definition import SagaDefinition
from saga.core.document import compile_definition, read_definition
from saga.core.replay import irreversible, replay_plan
from saga.core.state import SagaState, fold
from saga.verify.invariants import undone_past_the_pivot
from tests.unit.test_parallel_groups import FANOUT, PIVOTS, Fanout, _step

FOR_GOOD = {"compensation": None}
DEFINITIONS = [
    compile_definition(read_definition(PIVOTS)),
    compile_definition(
        read_definition(
            {
                **FANOUT,
                "steps": [
                    _step("open", "books"),
                    {**_step("sale", "books"), **FOR_GOOD},
                    {**_step("notify", "mailer"), **FOR_GOOD, "when": "id != 'nobody'"},
                ],
            }
        )
    ),
    compile_definition(
        read_definition(
            {
                **FANOUT,
                "steps": [
                    _step("open", "books"),
                    {"name": "both", "parallel": [_step("left", "a"), _step("right", "b")]},
                    {
                        "name": "last",
                        "parallel": [
                            {**_step("mail", "mailer"), **FOR_GOOD},
                            {**_step("post", "poster"), **FOR_GOOD},
                        ],
                    },
                ],
            }
        )
    ),
]

ANSWERS = ["ok", "fail", "transient", "unclear", "timeout", "late", "retry", "cancel", "replay"]
moves = st.lists(st.tuples(st.sampled_from(ANSWERS), st.integers(0, 7)), max_size=60)


def answer(saga: Fanout, move: str, k: int) -> None:
    """One thing that happens to the saga; `k` picks which command or timer."""
    state = saga.state
    if state.terminal:
        if move == "replay" and state.status == "failed":
            saga.apply(ReplaySaga(by="ops"))
        return
    timers = [t for d in saga.decisions for t in d.timers]
    due = [t for t in timers if t.kind == "retry" and t.timer_id in state.retries]
    if move == "retry" or not state.pending:
        if due:
            saga.apply(TimerFired(due[k % len(due)]))
        return
    if move == "cancel":
        saga.apply(CancelSaga(by="ops"))
        return
    command_id = sorted(state.pending)[k % len(state.pending)]
    if move == "timeout":
        (timer,) = [t for t in timers if t.command_id == command_id]
        saga.apply(TimerFired(timer))
        return
    if move == "late":
        earlier = sorted(state.superseded)
        if not earlier:
            return
        command_id, move = earlier[k % len(earlier)], "ok" if k % 2 else "fail"
    saga.apply(
        ReplyReceived(f"r{len(saga.decisions)}", command_id, *_reply(saga, command_id, move))
    )


def _reply(saga: Fanout, command_id: str, move: str) -> tuple[str, dict[str, Any]]:
    command = next(
        c for d in saga.decisions for c in d.commands if c.envelope.message_id == command_id
    )
    if move == "ok":
        return ("Undone" if command.envelope.type.startswith("Undo") else "Done"), {"value": 1}
    failure = CommandFailed(
        reason="no", transient=move == "transient", effect_unknown=move == "unclear"
    )
    return "CommandFailed", failure.model_dump(mode="json")


def check_never_undone_past_the_pivot(definition: SagaDefinition, saga: Fanout) -> None:
    records = [r for d in saga.decisions for r in d.records]
    assert not undone_past_the_pivot(definition, records)


def check_ended_well(definition: SagaDefinition, state: SagaState) -> None:
    past_pivot = irreversible(definition, state)
    if state.status == "completed":
        assert all(s.status in ("succeeded", "skipped") for s in state.steps)
    elif state.status == "compensated":
        assert not past_pivot
        for step in state.steps:
            took_effect = step.status == "succeeded" or (
                step.status == "failed" and step.effect_unknown
            )
            assert not took_effect, f"{step.name} was left done"
    else:
        assert replay_plan(definition, state) is not None, "a failed saga can be replayed"


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(range(len(DEFINITIONS))), moves)
def test_sagas_past_a_pivot_never_get_stuck_and_are_never_undone_past_it(
    which: int, plan: list[tuple[str, int]]
) -> None:
    definition = DEFINITIONS[which]
    saga = Fanout(definition=definition)
    for move, k in [*plan, *[("ok", 0), ("retry", 0)] * 40]:
        answer(saga, move, k)
        state = saga.state
        assert state.terminal or state.pending or state.retries, "a saga never gets stuck"
    state = saga.state
    assert state.terminal
    check_ended_well(definition, state)
    check_never_undone_past_the_pivot(definition, saga)
    assert fold([r for d in saga.decisions for r in d.records]) == state
