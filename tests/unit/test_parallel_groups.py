"""Parallel groups in the pure core: fan out, join, and undo whatever took effect."""

import itertools
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.messages import CommandFailed
from saga.core.decide import (
    CancelSaga,
    Decision,
    OutgoingCommand,
    ReplaySaga,
    ReplyReceived,
    SagaInput,
    TimerFired,
    decide,
    start_saga,
)
from saga.core.definition import SagaDefinition
from saga.core.document import DefinitionError, compile_definition, read_definition
from saga.core.reasons import ABANDONED
from saga.core.state import SagaState
from tests.unit.sagas import T0

BRANCHES = ("revenue", "rebates", "specialty")


def _step(name: str, participant: str, **extra: Any) -> dict[str, Any]:
    title = name.capitalize()
    return {
        "name": name,
        "participant": participant,
        "action": {"command": f"Compute{title}", "input": {"id": "{{input.id}}"}, "reply": "Done"},
        "compensation": {"command": f"Undo{title}", "reply": "Undone"},
        "retry": {"max_attempts": 2},
    } | extra


FANOUT: dict[str, Any] = {
    "name": "pricing",
    "version": 1,
    "input": {"type": "object", "required": ["id"]},
    "steps": [
        _step("open", "books"),
        {
            "name": "compute",
            "parallel": [
                _step("revenue", "sums"),
                _step("rebates", "rebater"),
                _step("specialty", "specialist"),
            ],
        },
        _step(
            "publish",
            "books",
            action={
                "command": "Publish",
                "input": {
                    "revenue": "{{steps.revenue.result.value}}",
                    "rebates": "{{steps.rebates.result.value}}",
                },
                "reply": "Done",
            },
        ),
    ],
}
DEFINITION = compile_definition(read_definition(FANOUT))


@dataclass
class Fanout:
    """One pricing saga driven by hand."""

    definition: SagaDefinition = DEFINITION
    ids: Any = field(default_factory=lambda: (f"id{n}" for n in itertools.count(1)))
    decisions: list[Decision] = field(default_factory=list)
    tick: int = 0

    def __post_init__(self) -> None:
        decision = start_saga(
            self.definition,
            saga_id="s1",
            customer="ann",
            saga_input={"id": "q1"},
            now=T0,
            new_id=lambda: next(self.ids),
        )
        self.decisions.append(decision)

    @property
    def state(self) -> SagaState:
        return self.decisions[-1].state

    def apply(self, saga_input: SagaInput) -> Decision:
        self.tick += 1
        decision = decide(
            self.definition,
            self.state,
            saga_input,
            now=T0 + timedelta(seconds=self.tick),
            new_id=lambda: next(self.ids),
            rng=lambda: 0.5,
        )
        self.decisions.append(decision)
        return decision

    def out(self, step: str) -> OutgoingCommand:
        """The command of `step` the saga awaits now."""
        (command_id,) = [c for c, p in self.state.pending.items() if p.step == step]
        return next(
            c for d in self.decisions for c in d.commands if c.envelope.message_id == command_id
        )

    def reply(self, step: str, outcome: str = "ok", *, transient: bool = False) -> Decision:
        command = self.out(step)
        if outcome == "ok":
            kind = "Undone" if command.envelope.type.startswith("Undo") else "Done"
            payload: dict[str, Any] = {"value": f"{step}-value"}
        else:
            kind = "CommandFailed"
            payload = CommandFailed(reason=outcome, transient=transient).model_dump(mode="json")
        return self.apply(
            ReplyReceived(
                f"r-{command.envelope.message_id}", command.envelope.message_id, kind, payload
            )
        )

    def time_out(self, step: str) -> Decision:
        command_id = self.out(step).envelope.message_id
        (timer,) = [t for d in self.decisions for t in d.timers if t.command_id == command_id]
        return self.apply(TimerFired(timer))

    def retry_due(self, step: str) -> Decision:
        timer = [
            t for d in self.decisions for t in d.timers if t.kind == "retry" and t.step == step
        ][-1]
        return self.apply(TimerFired(timer))

    def status(self, step: str) -> str:
        return self.state.step(step).status

    @property
    def events(self) -> list[str]:
        return [r.event.type for d in self.decisions for r in d.records]


def sent(decision: Decision) -> list[str]:
    return [c.envelope.type for c in decision.commands]


def test_a_group_starts_at_once_and_joins_when_all_have_succeeded() -> None:
    saga = Fanout()
    fan_out = saga.reply("open")
    assert sent(fan_out) == ["ComputeRevenue", "ComputeRebates", "ComputeSpecialty"]
    assert len(fan_out.timers) == 3  # each branch has its own timeout
    assert sent(saga.reply("specialty")) == []
    assert sent(saga.reply("revenue")) == []
    joined = saga.reply("rebates")
    assert sent(joined) == ["Publish"]
    assert joined.commands[0].envelope.payload == {
        "revenue": "revenue-value",
        "rebates": "rebates-value",
    }
    saga.reply("publish")
    assert saga.state.status == "completed"


def test_a_failed_branch_undoes_those_that_succeeded_then_the_steps_before() -> None:
    saga = Fanout()
    saga.reply("open")
    saga.reply("revenue")
    failed = saga.reply("rebates", "no_data")
    # Revenue is undone at once; specialty is still out: the saga waits for it.
    assert sent(failed) == ["UndoRevenue"]
    assert saga.state.status == "compensating"
    late = saga.reply("specialty")  # a late success is undone too
    assert sent(late) == ["UndoSpecialty"]
    assert sent(saga.reply("revenue")) == []  # open waits for the whole group to be undone
    assert sent(saga.reply("specialty")) == ["UndoOpen"]
    saga.reply("open")
    assert saga.state.status == "compensated"
    assert saga.state.reason == "no_data"
    assert [saga.status(n) for n in ("open", *BRANCHES, "publish")] == [
        "compensated",
        "compensated",
        "failed",
        "compensated",
        "pending",
    ]


def test_a_late_failure_of_a_branch_has_nothing_to_undo() -> None:
    saga = Fanout()
    saga.reply("open")
    saga.reply("rebates", "no_data")
    assert sent(saga.reply("specialty", "also_broken")) == []
    assert sent(saga.reply("revenue")) == ["UndoRevenue"]
    assert sent(saga.reply("revenue")) == ["UndoOpen"]
    assert saga.events.count("CompensationStarted") == 1
    assert saga.state.reason == "no_data"  # the first failure is the saga's reason


def test_a_branch_that_times_out_while_the_saga_is_undone_is_undone_not_retried() -> None:
    saga = Fanout()
    saga.reply("open")
    saga.reply("revenue", "no_data")
    saga.reply("rebates", "transient_trouble", transient=True)  # not tried again: undoing
    assert saga.status("rebates") == "failed"
    timed_out = saga.time_out("specialty")
    assert sent(timed_out) == ["UndoSpecialty"]  # it may have taken effect
    assert "RetryScheduled" not in saga.events


def test_a_branch_waiting_for_a_retry_is_given_up_when_another_fails() -> None:
    saga = Fanout()
    saga.reply("open")
    saga.reply("revenue", "busy", transient=True)  # a retry is scheduled
    assert "RetryScheduled" in saga.events
    failed = saga.reply("rebates", "no_data")
    abandoned = [r.event for r in failed.records if r.event.type == "StepFailed"]
    assert [e.reason for e in abandoned] == ["no_data", ABANDONED]
    assert sent(failed) == []  # its try said nothing happened: nothing to undo
    assert saga.state.retries == {}
    retry = saga.retry_due("revenue")
    assert retry.records == ()  # the retry no longer wanted changes nothing


def test_a_branch_waiting_for_a_retry_after_a_timeout_is_undone_when_given_up() -> None:
    saga = Fanout()
    saga.reply("open")
    saga.time_out("revenue")  # the try may have worked; a retry is scheduled
    failed = saga.reply("rebates", "no_data")
    assert sent(failed) == ["UndoRevenue"]


def test_a_cancel_during_a_group_undoes_every_branch_at_once() -> None:
    saga = Fanout()
    saga.reply("open")
    saga.reply("revenue")
    cancelled = saga.apply(CancelSaga(by="ops"))
    assert sorted(sent(cancelled)) == ["UndoRebates", "UndoRevenue", "UndoSpecialty"]
    for step in BRANCHES:
        saga.reply(step)
    assert sent(saga.decisions[-1]) == ["UndoOpen"]


PIVOTS: dict[str, Any] = {
    **FANOUT,
    "steps": [
        _step("open", "books"),
        {
            "name": "announce",
            "parallel": [
                {**_step("mail", "mailer"), "compensation": None},
                {**_step("post", "poster"), "compensation": None},
            ],
        },
    ],
}


def test_a_failure_once_a_step_that_cannot_be_undone_took_effect_undoes_nothing() -> None:
    saga = Fanout(definition=compile_definition(read_definition(PIVOTS)))
    saga.reply("open")
    saga.reply("mail")  # done, for good
    failed = saga.reply("post", "refused")
    assert sent(failed) == []  # nothing undone: open stays, as mail does
    assert saga.state.status == "failed"
    assert "after mail, which cannot be undone" in (saga.state.reason or "")


def test_a_failure_beside_a_step_that_cannot_be_undone_and_is_still_out_undoes_nothing() -> None:
    saga = Fanout(definition=compile_definition(read_definition(PIVOTS)))
    saga.reply("open")
    saga.reply("post", "refused")  # mail is still out: it may take effect
    assert saga.state.status == "failed"
    assert [saga.status(n) for n in ("open", "mail", "post")] == ["succeeded", "running", "failed"]


def test_replay_tries_a_step_refused_after_one_that_cannot_be_undone_again_and_finishes() -> None:
    saga = Fanout(definition=compile_definition(read_definition(PIVOTS)))
    saga.reply("open")
    saga.reply("mail")
    saga.reply("post", "refused")
    assert "Fix the cause, then saga replay tries post again" in (saga.state.reason or "")
    replayed = saga.apply(ReplaySaga(by="ops"))
    assert [(c.envelope.type, c.envelope.idempotency_key) for c in replayed.commands] == [
        ("ComputePost", "s1:post:execute:replay1")  # a new key: the refusal was an answer
    ]
    saga.reply("post")
    assert saga.state.status == "completed"
    assert not [c for d in saga.decisions for c in d.commands if c.envelope.type.startswith("Undo")]


def test_replay_asks_a_step_still_out_again_and_tries_the_refused_one_beside_it() -> None:
    saga = Fanout(definition=compile_definition(read_definition(PIVOTS)))
    saga.reply("open")
    saga.reply("post", "refused")  # mail is still out
    replayed = saga.apply(ReplaySaga(by="ops"))
    assert sorted((c.envelope.type, c.envelope.idempotency_key) for c in replayed.commands) == [
        ("ComputeMail", "s1:mail:execute"),  # its effect is unknown: the same key asks
        ("ComputePost", "s1:post:execute:replay1"),
    ]
    saga.reply("mail")
    saga.reply("post")
    assert saga.state.status == "completed"


def test_a_reply_sent_as_it_was_to_a_try_made_before_the_saga_failed_answers_the_replay() -> None:
    saga = Fanout(definition=compile_definition(read_definition(PIVOTS)))
    saga.reply("open")
    first = saga.out("mail")
    saga.reply("post", "refused")  # the saga fails while mail is out
    done = ReplyReceived("r-mail", first.envelope.message_id, "Done", {"value": "sent"})
    assert [r.event.type for r in saga.apply(done).records] == ["ReplyIgnored"]
    saga.apply(ReplaySaga(by="ops"))  # mail is asked again
    # The mailer answers the new try with the reply it gave first, as it was.
    assert "StepSucceeded" in [r.event.type for r in saga.apply(done).records]
    saga.reply("post")
    assert saga.state.status == "completed"


WITH_A_CONDITION: dict[str, Any] = {
    **FANOUT,
    "steps": [
        _step("open", "books"),
        {**_step("sale", "books"), "compensation": None},
        {
            "name": "announce",
            "parallel": [
                {**_step("mail", "mailer"), "compensation": None, "when": "id > 3"},
                {**_step("post", "poster"), "compensation": None},
            ],
        },
    ],
}


def test_a_replay_goes_forward_through_the_conditions_of_the_stage_it_resumes() -> None:
    saga = Fanout(definition=compile_definition(read_definition(WITH_A_CONDITION)))
    saga.reply("open")
    saga.reply("sale")  # then mail's condition cannot be read ("q1" > 3): post never begun
    assert saga.state.status == "failed"
    assert "cannot be made from this saga's data" in (saga.state.reason or "")
    again = saga.apply(ReplaySaga(by="ops"))
    # Its condition is read again, not skipped: it still cannot be, and nothing is sent.
    assert again.commands == () and saga.state.status == "failed"
    assert [saga.status(n) for n in ("sale", "mail", "post")] == ["succeeded", "failed", "pending"]


def test_a_step_that_cannot_be_undone_is_tried_until_it_answers_even_beside_a_failure() -> None:
    saga = Fanout(definition=compile_definition(read_definition(PIVOTS)))
    saga.reply("open")
    saga.time_out("mail")
    saga.retry_due("mail")
    saga.time_out("mail")
    saga.retry_due("mail")
    assert saga.status("mail") == "running"  # past its budget of 2: still tried


def test_a_step_cannot_read_a_step_beside_it() -> None:
    document = {**FANOUT, "steps": [dict(s) for s in FANOUT["steps"]]}
    group = document["steps"][1]
    reader = _step(
        "reader",
        "books",
        action={"command": "Read", "input": {"x": "{{steps.revenue.result}}"}, "reply": "Done"},
    )
    document["steps"][1] = {**group, "parallel": [*group["parallel"], reader]}
    with pytest.raises(DefinitionError, match="reads step 'revenue', which is not an earlier step"):
        compile_definition(read_definition(document))


def test_a_step_that_cannot_be_undone_cannot_run_beside_one_that_can() -> None:
    document = {**FANOUT, "steps": [dict(s) for s in FANOUT["steps"]]}
    group = document["steps"][1]
    pivot = {**group["parallel"][0], "compensation": None}
    document["steps"][1] = {**group, "parallel": [pivot, *group["parallel"][1:]]}
    with pytest.raises(DefinitionError, match="after or beside revenue"):
        compile_definition(read_definition(document))


def test_a_group_needs_two_steps_and_a_name_of_its_own() -> None:
    one = {**FANOUT, "steps": [{"name": "g", "parallel": [_step("a", "books")]}]}
    with pytest.raises(DefinitionError, match=r"steps\.0\.parallel"):
        read_definition(one)
    clash = {
        **FANOUT,
        "steps": [{"name": "a", "parallel": [_step("a", "books"), _step("b", "sums")]}],
    }
    with pytest.raises(DefinitionError, match="names must be unique"):
        compile_definition(read_definition(clash))


OUTCOMES = st.sampled_from(["ok", "fail", "transient", "timeout"])


@settings(max_examples=300, deadline=None)
@given(
    outcomes=st.lists(OUTCOMES, min_size=3, max_size=3),
    order=st.permutations(BRANCHES),
    undo_outcomes=st.lists(st.sampled_from(["ok", "fail"]), min_size=4, max_size=4),
)
def test_whatever_the_branches_answer_the_saga_ends_and_undoes_all_that_took_effect(
    outcomes: list[str], order: list[str], undo_outcomes: list[str]
) -> None:
    saga = Fanout()
    saga.reply("open")
    answers = dict(zip(BRANCHES, outcomes, strict=True))
    undo = iter(undo_outcomes * 3)
    took_effect: set[str] = {"open"}
    for step in order:
        if saga.state.step(step).status != "running" or not any(
            p.step == step for p in saga.state.pending.values()
        ):
            continue  # given up meanwhile (abandoned while waiting for a retry)
        answer = answers[step]
        if answer == "ok":
            saga.reply(step)
            took_effect.add(step)
        elif answer == "fail":
            saga.reply(step, "no_data")
        elif answer == "transient":
            saga.reply(step, "busy", transient=True)
        else:
            saga.time_out(step)
            took_effect.add(step)  # nobody knows
    # Drive the rest: retries come due, commands are answered (compensations as drawn),
    # until nothing is awaited.
    for _ in range(50):
        if saga.state.terminal:
            break
        if saga.state.pending:
            _, pending = next(iter(saga.state.pending.items()))
            if pending.action == "compensate":
                saga.reply(pending.step, "ok" if next(undo) == "ok" else "cannot_undo")
            else:
                saga.reply(pending.step)
                took_effect.add(pending.step)
        elif saga.state.retries:
            retry = next(iter(saga.state.retries.values()))
            saga.retry_due(retry.step)
        else:
            raise AssertionError(f"stuck: {saga.state}")
    state = saga.state
    assert state.terminal, "the saga must end"
    assert not state.pending and not state.retries
    if state.status == "completed":
        assert "fail" not in outcomes  # timeouts and transient failures were retried
        assert all(state.step(n).status == "succeeded" for n in ("open", *BRANCHES, "publish"))
    else:
        assert "fail" in outcomes
        for name in took_effect:
            assert state.step(name).status in ("compensated", "compensation_failed"), name
        assert (state.status == "failed") == any(
            s.status == "compensation_failed" for s in state.steps
        )
