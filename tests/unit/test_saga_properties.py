"""Properties of the order saga over arbitrary replies, failures and duplicates (hypothesis)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from saga.core.state import fold
from tests.unit.sagas import Run

# Per command: succeed, fail, or answer and then answer again (a duplicate delivery).
answers = st.lists(st.sampled_from(["ok", "fail", "ok+dup", "fail+dup"]), min_size=8, max_size=8)
methods = st.sampled_from(["Credit Card", "Debit Card", "Cash on Delivery"])


def run_saga(method: str, plan: list[str]) -> Run:
    run = Run.start(payment_method=method)
    for answer in plan:
        if not run.outbox:
            break
        command = run.pending
        if answer.startswith("ok"):
            run.succeed()
        else:
            run.fail("refused")
        if answer.endswith("+dup"):
            run.reply("CommandFailed", {"reason": "late"}, to=command)
    return run


@settings(max_examples=300, deadline=None)
@given(methods, answers)
def test_the_saga_always_ends_terminal_with_nothing_left_done(method: str, plan: list[str]) -> None:
    run = run_saga(method, plan)
    state = run.state
    assert state.terminal
    assert not run.outbox and not state.pending
    statuses = {s.name: s.status for s in state.steps}
    if state.status == "completed":
        assert all(s in ("succeeded", "skipped") for s in statuses.values())
    elif state.status == "compensated":
        # Every step that took effect and can be undone was undone.
        assert "succeeded" not in [
            statuses[n] for n in ("reserve_stock", "take_payment", "create_order")
        ]
    else:
        assert "compensation_failed" in statuses.values()


@settings(max_examples=300, deadline=None)
@given(methods, answers)
def test_no_command_is_issued_twice_for_one_step_and_action(method: str, plan: list[str]) -> None:
    run = run_saga(method, plan)
    keys = [c.envelope.idempotency_key for d in run.decisions for c in d.commands]
    assert len(keys) == len(set(keys))


@settings(max_examples=100, deadline=None)
@given(methods, answers)
def test_the_log_always_folds_to_the_state(method: str, plan: list[str]) -> None:
    run = run_saga(method, plan)
    assert fold([r for d in run.decisions for r in d.records]) == run.state


@settings(max_examples=100, deadline=None)
@given(methods, answers)
def test_cash_on_delivery_never_charges(method: str, plan: list[str]) -> None:
    run = run_saga(method, plan)
    if method == "Cash on Delivery":
        assert "ChargePayment" not in run.sent
