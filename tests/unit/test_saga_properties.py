"""Properties of the order saga over arbitrary interleavings (hypothesis): replies, failures,
transient failures, timeouts, duplicates, late answers, stale timers, cancels and replays."""

from hypothesis import example, given, settings
from hypothesis import strategies as st

from saga.core.decide import CancelSaga, ReplaySaga, TimerFired
from saga.core.events import SagaReplayed, StepRequested
from saga.core.policy import COMPENSATION_RETRY, STEP_RETRY
from saga.core.replay import irreversible, replay_plan
from saga.core.state import SagaState, fold
from saga.verify.invariants import undone_past_the_pivot
from tests.shop_saga import ORDER_SAGA
from tests.unit.sagas import Run

MOVES = ["ok", "fail", "transient", "timeout", "duplicate", "late", "first_timer", "cancel"]
plans = st.lists(st.sampled_from(MOVES), max_size=40)
# Each replay of a saga that failed, with what happens after it.
replays = st.lists(plans, max_size=3)
methods = st.sampled_from(["Credit Card", "Debit Card", "Cash on Delivery"])
UNDOABLE = ("reserve_stock", "take_payment", "create_order")
# Found by random runs: the sale timed out, its retry was refused. The saga fails (the sale
# may have taken effect), and replay must not undo what came before it.
SALE_MAY_HAVE_WORKED = [
    ("Credit Card", ["ok", "ok", "ok", "timeout", "ok", "fail"]),
    ("Cash on Delivery", ["ok", "ok", "timeout", "ok", "fail"]),
]


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
        case "late":
            # The answer to an earlier try of the step comes now, after its timeout.
            run.time_out()
            run.reply("CommandFailed", {"reason": "refused"}, to=command)
        case "first_timer":
            run.apply(TimerFired(run.timers[0]))
        case "cancel":
            run.apply(CancelSaga(by="ann@example.com"))


def run_to_the_end(run: Run, plan: list[str]) -> None:
    for move in [*plan, *["ok"] * 60]:
        if run.state.terminal:
            break
        play(run, move)
        state = run.state
        assert len(state.pending) <= 1, "a sequential saga awaits one command at a time"
        assert state.terminal or state.pending or state.retries, "a saga never gets stuck"


def run_saga(method: str, plan: list[str], again: list[list[str]] | None = None) -> Run:
    """Play `plan`; then, while the saga has failed, replay it and play the next plan."""
    run = Run.start(payment_method=method)
    run_to_the_end(run, plan)
    for later in again or []:
        if run.state.status != "failed":
            break
        run.apply(ReplaySaga(by="operator"))
        run_to_the_end(run, later)
    return run


def check_ended_well(state: SagaState) -> None:
    """The saga ended, and what it left is what its status says."""
    assert state.terminal
    assert not state.pending and not state.retries
    steps = {s.name: s for s in state.steps}
    if state.status != "failed":
        assert not state.superseded
    if state.status == "completed":
        assert all(s.status in ("succeeded", "skipped") for s in steps.values())
        return
    past_pivot = irreversible(ORDER_SAGA, state)
    if state.status == "compensated":
        # Nothing past the pivot took effect, or may have: it could not have been undone.
        assert not past_pivot
        for name in UNDOABLE:
            step = steps[name]
            # Every step that took effect, or may have, was undone.
            assert step.status != "succeeded"
            assert not (step.status == "failed" and step.effect_unknown)
        return
    plan = replay_plan(ORDER_SAGA, state)
    assert plan is not None, "a failed saga can always be replayed"
    if past_pivot:
        # A step that cannot be undone took effect or may have: nothing was undone, and
        # replay can only go forward.
        assert all(steps[n].status in ("succeeded", "skipped") for n in UNDOABLE)
        assert plan.direction == "finish" and plan.ask + plan.retry == ("confirm_stock",)
        # The tries of what replay will ask are remembered: an answer to any of them counts.
        assert {p.step for p in state.superseded.values()} <= set(plan.ask)
    else:
        failed = tuple(s.name for s in state.steps if s.status == "compensation_failed")
        assert failed and plan.direction == "undo" and plan.retry == failed


def check_nothing_undone_past_the_pivot(run: Run) -> None:
    """No compensation is ever requested while a step that cannot be undone has, or may
    have, taken effect."""
    records = [r for d in run.decisions for r in d.records]
    assert not undone_past_the_pivot(ORDER_SAGA, records)


@settings(max_examples=400, deadline=None)
@given(methods, plans, replays)
@example(*SALE_MAY_HAVE_WORKED[0], [])
@example(*SALE_MAY_HAVE_WORKED[1], [])
@example(*SALE_MAY_HAVE_WORKED[0], [["fail"]])
@example(*SALE_MAY_HAVE_WORKED[0], [["timeout", "fail"], ["ok"]])
def test_the_saga_always_ends_terminal_with_nothing_left_undone(
    method: str, plan: list[str], again: list[list[str]]
) -> None:
    run = run_saga(method, plan, again)
    check_ended_well(run.state)
    check_nothing_undone_past_the_pivot(run)


@settings(max_examples=200, deadline=None)
@given(methods, plans, replays)
def test_attempts_stay_within_their_budgets(
    method: str, plan: list[str], again: list[list[str]]
) -> None:
    state = run_saga(method, plan, again).state
    for step in state.steps:
        if ORDER_SAGA.step(step.name).compensation is not None:  # past the pivot: no budget
            assert step.attempts <= STEP_RETRY.max_attempts
        # A replay gives a compensation it tries again a fresh budget.
        assert step.compensation_attempts <= COMPENSATION_RETRY.max_attempts


@settings(max_examples=200, deadline=None)
@given(methods, plans, replays)
def test_every_command_of_a_step_carries_the_steps_idempotency_key(
    method: str, plan: list[str], again: list[list[str]]
) -> None:
    run = run_saga(method, plan, again)
    commands = iter([c for d in run.decisions for c in d.commands])
    # A compensation sent after replay N carries `:replayN`; a step past the pivot tried
    # again by replay N after a refusal does too; a step asked again keeps its key.
    renewed: dict[str, int] = {}  # step -> the replay that renewed its command's key
    replays = 0
    for event in [r.event for d in run.decisions for r in d.records]:
        if isinstance(event, SagaReplayed):
            replays += 1
            if event.direction == "finish":
                renewed.update(dict.fromkeys(event.retry, replays))
        if isinstance(event, StepRequested):
            key = f"saga1:{event.step}:{event.action}"
            replay = replays if event.action == "compensate" else renewed.get(event.step, 0)
            key += f":replay{replay}" if replay else ""
            assert next(commands).envelope.idempotency_key == key
    assert next(commands, None) is None


@settings(max_examples=150, deadline=None)
@given(methods, plans, replays)
def test_the_log_always_folds_to_the_state(
    method: str, plan: list[str], again: list[list[str]]
) -> None:
    run = run_saga(method, plan, again)
    assert fold([r for d in run.decisions for r in d.records]) == run.state


@settings(max_examples=150, deadline=None)
@given(methods, plans, replays)
def test_cash_on_delivery_never_charges(
    method: str, plan: list[str], again: list[list[str]]
) -> None:
    run = run_saga(method, plan, again)
    if method == "Cash on Delivery":
        assert "ChargePayment" not in run.sent
