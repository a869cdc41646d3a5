"""Timeouts, retries, cancels and replays in the core: one test per rule."""

from dataclasses import replace
from datetime import timedelta

import pytest

from saga.core.decide import CancelSaga, ReplaySaga, TimerFired
from saga.core.policy import (
    COMPENSATION_RETRY,
    STEP_RETRY,
    STEP_TIMEOUT,
    backoff_delay,
)
from saga.core.state import fold
from tests.shop_saga import ORDER_SAGA
from tests.unit.sagas import T0, Run


def test_every_command_is_awaited_for_its_steps_timeout() -> None:
    run = Run.start()
    (timer,) = run.timers
    assert timer.kind == "timeout"
    assert timer.command_id == run.pending.envelope.message_id
    assert timer.due_at == T0 + STEP_TIMEOUT
    assert (timer.step, timer.action, timer.attempt) == ("reserve_stock", "execute", 1)


def test_a_timeout_schedules_a_retry_after_the_back_off() -> None:
    run = Run.start()
    decision = run.time_out()
    assert [r.event.type for r in decision.records] == ["StepTimedOut", "RetryScheduled"]
    assert decision.commands == ()
    (retry,) = decision.timers
    expected = backoff_delay(STEP_RETRY, 1, run.rand)
    assert retry.kind == "retry" and retry.due_at == run.now + expected
    assert run.of_type("RetryScheduled")[0].attempt == 2
    assert run.state.pending == {}  # the timed-out command is no longer awaited
    assert run.state.status == "running"


def test_a_retry_sends_the_command_again_under_the_same_idempotency_key() -> None:
    run = Run.start()
    first = run.pending.envelope
    run.time_out()
    decision = run.retry_due()
    (again,) = decision.commands
    assert again.envelope.type == "ReserveStock"
    assert again.envelope.message_id != first.message_id
    assert again.envelope.idempotency_key == first.idempotency_key
    assert run.of_type("StepRequested")[-1].attempt == 2
    assert [t.kind for t in decision.timers] == ["timeout"]
    assert run.state.retries == {}


def test_when_the_attempts_are_spent_the_timed_out_step_is_compensated_too() -> None:
    run = Run.start()
    run.succeed()  # stock reserved
    for _ in range(STEP_RETRY.max_attempts - 1):
        run.time_out()
        run.retry_due()
    decision = run.time_out()
    assert [r.event.type for r in decision.records] == [
        "StepTimedOut",
        "StepFailed",
        "CompensationStarted",
        "StepRequested",
    ]
    failed = run.of_type("StepFailed")[0]
    assert (failed.step, failed.reason, failed.effect_unknown) == ("take_payment", "timeout", True)
    # The charge may have happened without its reply: refund it, then release the stock.
    assert run.pending.envelope.type == "RefundPayment"
    run.succeed()
    assert run.pending.envelope.type == "ReleaseStock"
    run.succeed()
    assert (run.state.status, run.state.reason) == ("compensated", "timeout")
    assert run.state.step("take_payment").attempts == STEP_RETRY.max_attempts


def test_an_answered_command_gives_up_its_timeout() -> None:
    run = Run.start()
    (timer,) = run.timers
    decision = run.succeed()
    assert decision.cancelled_timers == (timer.timer_id,)
    (next_timer,) = decision.timers
    assert next_timer.timer_id not in decision.cancelled_timers


def test_a_cancel_gives_up_the_timeout_of_the_command_in_flight() -> None:
    run = Run.start()
    (timer,) = run.timers
    assert timer.timer_id in run.apply(CancelSaga(by="ann")).cancelled_timers


def test_a_timeout_for_a_command_already_answered_does_nothing() -> None:
    run = Run.start()
    (timer,) = run.timers
    run.succeed()
    assert run.apply(TimerFired(timer), after=30).records == ()


def test_a_retry_no_longer_wanted_does_nothing() -> None:
    run = Run.start()
    run.time_out()
    retry = run.timers[-1]
    run.apply(CancelSaga(by="ann@example.com"))
    before = run.state
    assert run.apply(TimerFired(retry)).records == ()
    assert run.state == before


def test_a_late_answer_to_an_earlier_try_is_the_steps_answer() -> None:
    # Every try of a step carries the same idempotency key, and the participant answers
    # all of them alike: the first answer to arrive, for any of them, is the step's.
    run = Run.start()
    first = run.pending
    run.time_out()
    run.retry_due()
    second = run.pending
    late = run.reply(
        "StockReserved", {"items": [], "amount": "1.00"}, to=first, message_id="reply-1"
    )
    assert [r.event.type for r in late.records][:2] == ["StepSucceeded", "StepRequested"]
    assert run.state.step("reserve_stock").status == "succeeded"
    assert f"timeout-{second.envelope.message_id}" in late.cancelled_timers
    # The same reply again, now naming the retry it answers (the protocol allows it):
    # the step has its answer already; it is recorded, not applied twice.
    again = run.reply(
        "StockReserved", {"items": [], "amount": "1.00"}, to=second, message_id="reply-1"
    )
    assert [r.event.type for r in again.records] == ["ReplyIgnored"]
    assert run.sent.count("ReserveStock") == 2 and run.sent[-1] == "ChargePayment"


def test_a_late_answer_while_a_retry_waits_answers_the_step_and_the_retry_is_not_made() -> None:
    run = Run.start()
    first = run.pending
    run.time_out()
    assert run.state.retries
    run.reply("StockReserved", {"items": [], "amount": "1.00"}, to=first)
    assert run.state.step("reserve_stock").status == "succeeded" and not run.state.retries
    assert run.retry_due().records == ()  # the retry's timer comes due: nothing to do
    assert run.sent == ["ReserveStock", "ChargePayment"]


def test_a_late_transient_failure_of_an_earlier_try_is_recorded_not_applied() -> None:
    run = Run.start()
    first = run.pending
    run.time_out()
    run.retry_due()
    late = run.reply("CommandFailed", {"reason": "busy", "transient": True}, to=first)
    assert [r.event.type for r in late.records] == ["ReplyIgnored"]
    assert run.of_type("ReplyIgnored")[0].why == "earlier_try_transient"
    run.succeed()  # the retry's answer
    assert run.state.step("reserve_stock").status == "succeeded"


def test_an_answer_to_a_try_of_a_step_given_up_is_recorded_not_applied() -> None:
    run = Run.start()
    tries = []
    for _ in range(STEP_RETRY.max_attempts):
        tries.append(run.pending)
        run.time_out()
        if run.state.retries:
            run.retry_due()
    assert run.pending.envelope.type == "ReleaseStock"  # given up, and undone to be sure
    late = run.reply("StockReserved", {"items": [], "amount": "1.00"}, to=tries[0])
    assert [r.event.type for r in late.records] == ["ReplyIgnored"]
    assert run.of_type("ReplyIgnored")[0].why == "not_awaited"


def test_a_transient_failure_is_retried_and_then_compensated_without_itself() -> None:
    run = Run.start()
    run.succeed()
    for _ in range(STEP_RETRY.max_attempts - 1):
        run.fail("gateway_down", transient=True)
        run.retry_due()
    run.fail("gateway_down", transient=True)
    failed = run.of_type("StepFailed")[0]
    # The participant said nothing happened: nothing of this step to undo.
    assert (failed.reason, failed.effect_unknown) == ("gateway_down", False)
    assert run.pending.envelope.type == "ReleaseStock"
    run.succeed()
    assert run.sent.count("RefundPayment") == 0
    assert (run.state.status, run.state.reason) == ("compensated", "gateway_down")


def test_a_step_one_of_whose_tries_may_have_worked_is_compensated_when_given_up() -> None:
    run = Run.start()
    run.succeed()
    run.time_out()  # the first charge may have gone through
    run.retry_due()
    for _ in range(STEP_RETRY.max_attempts - 2):
        run.fail("gateway_down", transient=True)
        run.retry_due()
    run.fail("gateway_down", transient=True)  # the last try says nothing happened
    failed = run.of_type("StepFailed")[0]
    assert (failed.reason, failed.effect_unknown) == ("gateway_down", True)
    assert run.pending.envelope.type == "RefundPayment"


def test_a_transient_failure_whose_effect_is_unknown_is_compensated_when_given_up() -> None:
    run = Run.start()
    run.succeed()
    for _ in range(STEP_RETRY.max_attempts - 1):
        run.reply(
            "CommandFailed", {"reason": "http_503", "transient": True, "effect_unknown": True}
        )
        run.retry_due()
    run.reply("CommandFailed", {"reason": "http_503", "transient": True, "effect_unknown": True})
    assert run.of_type("StepFailed")[0].effect_unknown is True
    assert run.pending.envelope.type == "RefundPayment"


def test_compensations_have_their_own_budget_then_the_saga_fails() -> None:
    run = Run.start()
    run.succeed()
    run.fail("insufficient_funds")
    for _ in range(COMPENSATION_RETRY.max_attempts - 1):
        run.time_out()
        run.retry_due()
    run.time_out()
    assert run.sent.count("ReleaseStock") == COMPENSATION_RETRY.max_attempts
    assert run.state.status == "failed"
    assert run.state.reason == "compensation of reserve_stock failed: timeout"


def test_the_operator_overrides_timeouts_and_budgets() -> None:
    tuned = ORDER_SAGA.with_policy(
        step_timeout=timedelta(seconds=2),
        max_attempts=7,
        retry_backoff=0.1,
        compensation_max_attempts=9,
    )
    for step in tuned.steps:
        assert step.timeout == timedelta(seconds=2)
        assert (step.retry.max_attempts, step.retry.backoff) == (7, 0.1)
        assert (step.compensation_retry.max_attempts, step.compensation_retry.backoff) == (9, 0.1)
    assert ORDER_SAGA.steps[0].timeout == STEP_TIMEOUT  # the original is untouched


def test_cancel_undoes_the_done_steps_and_the_one_in_flight() -> None:
    run = Run.start()
    run.succeed()  # reserved; the charge is in flight
    decision = run.apply(CancelSaga(by="ann@example.com"))
    assert [r.event.type for r in decision.records] == [
        "CancelRequested",
        "StepFailed",
        "CompensationStarted",
        "StepRequested",
    ]
    assert run.pending.envelope.type == "RefundPayment"
    run.succeed()
    run.succeed()  # release
    assert (run.state.status, run.state.reason) == ("compensated", "cancelled")
    assert [s.status for s in run.state.steps] == [
        "compensated",
        "compensated",
        "pending",
        "pending",
    ]


def test_cancel_while_waiting_for_a_retry() -> None:
    run = Run.start()
    run.time_out()
    run.apply(CancelSaga(by="admin@example.com"))
    assert run.pending.envelope.type == "ReleaseStock"
    assert run.state.retries == {}
    run.succeed()
    assert run.state.status == "compensated"


def test_cancel_while_waiting_for_a_retry_after_tries_that_did_nothing_undoes_nothing_of_it() -> (
    None
):
    run = Run.start()
    run.succeed()
    run.fail("gateway_down", transient=True)  # the charge was not made; a retry waits
    run.apply(CancelSaga(by="ann@example.com"))
    assert run.pending.envelope.type == "ReleaseStock"  # the reservation only
    run.succeed()
    assert run.state.status == "compensated" and "RefundPayment" not in run.sent


@pytest.mark.parametrize("answers", [["insufficient_stock"], ["ok", "insufficient_funds"]])
def test_cancel_of_a_saga_not_running_does_nothing(answers: list[str]) -> None:
    run = Run.start()
    for answer in answers:
        run.succeed() if answer == "ok" else run.fail(answer)
    assert run.state.status in ("compensated", "compensating")
    assert run.apply(CancelSaga(by="ann@example.com")).records == ()


def test_a_late_success_of_a_cancelled_step_is_recorded_and_the_step_still_undone() -> None:
    run = Run.start()
    reserve = run.pending
    run.apply(CancelSaga(by="ann@example.com"))
    late = run.reply("StockReserved", {"items": [], "amount": "1.00"}, to=reserve)
    assert [r.event.type for r in late.records] == ["ReplyIgnored"]
    assert run.pending.envelope.type == "ReleaseStock"


def test_replay_retries_exactly_the_failed_compensation_with_a_fresh_budget() -> None:
    run = Run.start()
    run.succeed()
    run.succeed()
    run.fail("unknown_vendor")
    run.fail("ledger_locked")  # the refund fails
    run.succeed()  # the release works
    assert run.state.status == "failed"
    decision = run.apply(ReplaySaga(by="operator"))
    assert [r.event.type for r in decision.records] == ["SagaReplayed", "StepRequested"]
    (again,) = decision.commands
    assert again.envelope.type == "RefundPayment"
    # A key of its own: a participant that refused the refund before tries it again.
    assert again.envelope.idempotency_key == "saga1:take_payment:compensate:replay1"
    assert run.of_type("StepRequested")[-1].attempt == 1
    run.succeed()
    assert (run.state.status, run.state.reason) == ("compensated", "unknown_vendor")
    assert fold([r for d in run.decisions for r in d.records]) == run.state


def test_replay_of_a_saga_that_has_not_failed_does_nothing() -> None:
    run = Run.start()
    assert run.apply(ReplaySaga(by="operator")).records == ()


def test_a_steps_time_counts_from_its_first_attempt() -> None:
    run = Run.start()
    run.time_out()
    run.retry_due()
    run.succeed()
    step = run.state.step("reserve_stock")
    assert step.started_at == T0 and step.attempts == 2
    assert step.ended_at == run.now


def test_a_step_past_the_pivot_is_retried_until_it_answers() -> None:
    run = Run.start()
    for _ in range(3):
        run.succeed()  # reserved, charged, ordered: only the sale is left
    for _ in range(STEP_RETRY.max_attempts + 3):
        run.time_out()
        run.retry_due()
    assert run.state.status == "running"
    assert run.state.step("confirm_stock").attempts == STEP_RETRY.max_attempts + 4
    run.succeed()
    assert run.state.status == "completed"
    assert "CancelOrder" not in run.sent


def test_a_saga_past_the_pivot_cannot_be_cancelled() -> None:
    run = Run.start()
    for _ in range(3):
        run.succeed()
    assert run.pending.envelope.type == "ConfirmStock"
    assert run.apply(CancelSaga(by="ann@example.com")).records == ()
    run.succeed()
    assert run.state.status == "completed"


def test_a_step_that_can_be_undone_cannot_follow_one_that_cannot() -> None:
    first, *rest = ORDER_SAGA.steps
    with pytest.raises(ValueError, match="must not have compensations"):
        replace(ORDER_SAGA, steps=(*rest, first), stages=())
