"""Properties of the order saga over arbitrary interleavings (hypothesis): replies, failures,
transient failures, timeouts, duplicates, stale timers and cancels."""

from hypothesis import given, settings
from hypothesis import strategies as st

from saga.core.decide import CancelSaga, TimerFired
from saga.core.definition import COMPENSATION_RETRY, STEP_RETRY
from saga.core.state import fold
from saga.definitions import ORDER_SAGA
from tests.unit.sagas import Run

MOVES = ["ok", "fail", "transient", "timeout", "duplicate", "first_timer", "cancel"]
plans = st.lists(st.sampled_from(MOVES), max_size=40)
methods = st.sampled_from(["Credit Card", "Debit Card", "Cash on Delivery"])
UNDOABLE = ("reserve_stock", "take_payment", "create_order")


def play(run: Run, move: str) -> None:
    if not run.outbox:
        run.retry_due()  # the saga waits for a retry: let it come
        return
    command = run.pending
    match move:
        case "ok":
            run.succeed()
        case "fail":
            run.fail("refused")
        case "transient":
            run.fail("busy", transient=True)
        case "timeout":
            run.time_out()
        case "duplicate":
            run.succeed()
            run.reply("CommandFailed", {"reason": "late"}, to=command)
        case "first_timer":
            run.apply(TimerFired(run.timers[0]))
        case "cancel":
            run.apply(CancelSaga(by="ann@example.com"))


def run_saga(method: str, plan: list[str]) -> Run:
    run = Run.start(payment_method=method)
    for move in [*plan, *["ok"] * 60]:
        if run.state.terminal:
            break
        play(run, move)
        assert len(run.state.pending) <= 1, "a sequential saga awaits one command at a time"
    return run


@settings(max_examples=400, deadline=None)
@given(methods, plans)
def test_the_saga_always_ends_terminal_with_nothing_left_undone(
    method: str, plan: list[str]
) -> None:
    run = run_saga(method, plan)
    state = run.state
    assert state.terminal
    assert not state.pending and not state.retries
    statuses = {s.name: s for s in state.steps}
    if state.status == "completed":
        assert all(s.status in ("succeeded", "skipped") for s in statuses.values())
    elif state.status == "compensated":
        # Nothing past the pivot took effect, or may have: it could not have been undone.
        confirm = statuses["confirm_stock"]
        assert confirm.status != "succeeded" and not confirm.effect_unknown
        for name in UNDOABLE:
            step = statuses[name]
            # Every step that took effect, or may have, was undone.
            assert step.status != "succeeded"
            assert not (step.status == "failed" and step.effect_unknown)
    else:
        assert "compensation_failed" in [s.status for s in statuses.values()]


@settings(max_examples=200, deadline=None)
@given(methods, plans)
def test_attempts_stay_within_their_budgets(method: str, plan: list[str]) -> None:
    state = run_saga(method, plan).state
    for step in state.steps:
        if ORDER_SAGA.step(step.name).compensation is not None:  # past the pivot: no budget
            assert step.attempts <= STEP_RETRY.max_attempts
        assert step.compensation_attempts <= COMPENSATION_RETRY.max_attempts


@settings(max_examples=200, deadline=None)
@given(methods, plans)
def test_every_command_of_a_step_carries_the_steps_idempotency_key(
    method: str, plan: list[str]
) -> None:
    run = run_saga(method, plan)
    requested = run.of_type("StepRequested")
    commands = [c for d in run.decisions for c in d.commands]
    assert len(commands) == len(requested)
    for event, command in zip(requested, commands, strict=True):
        assert command.envelope.idempotency_key == f"saga1:{event.step}:{event.action}"


@settings(max_examples=150, deadline=None)
@given(methods, plans)
def test_the_log_always_folds_to_the_state(method: str, plan: list[str]) -> None:
    run = run_saga(method, plan)
    assert fold([r for d in run.decisions for r in d.records]) == run.state


@settings(max_examples=150, deadline=None)
@given(methods, plans)
def test_cash_on_delivery_never_charges(method: str, plan: list[str]) -> None:
    run = run_saga(method, plan)
    if method == "Cash on Delivery":
        assert "ChargePayment" not in run.sent
