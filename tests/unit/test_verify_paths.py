"""Path tests of the order saga written with the helper users get (saga.verify): each a
script of participant answers, walked on a simulated clock, every invariant checked."""

from pathlib import Path
from typing import Final

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from saga.core.events import StepFailed
from saga.verify import Behaviour, DefinitionPaths, SagaPath, Try
from saga.verify.invariants import check_end
from saga.verify.script import OK
from saga.verify.world import World
from services.messages import CATALOGUE

ROOT: Final = Path(__file__).resolve().parents[2]
ORDER: Final = DefinitionPaths.from_file(ROOT / "services/definitions/order.yaml", CATALOGUE)
CARD, CASH = 0, 1  # the inputs made up: one paying by card, one on delivery


def test_the_inputs_made_up_are_one_paying_by_card_and_one_on_delivery() -> None:
    assert [i.value["payment_method"] for i in ORDER.inputs] == ["Credit Card", "Cash on Delivery"]


def test_payment_times_out_after_charging_then_the_refund_fails_twice() -> None:
    path = ORDER.walk(
        {"take_payment": Try.LOST_REPLY, "create_order": Try.REFUSED,
         "undo take_payment": [Try.TRANSIENT, Try.TRANSIENT]}
    )  # fmt: skip
    assert path.end == "compensated" and not path.violations
    assert path.undone == {"reserve_stock", "take_payment"}
    assert path.state.step("take_payment").compensation_attempts == 3


def test_a_refund_that_never_works_leaves_the_saga_failed_for_a_human() -> None:
    path = ORDER.walk({"create_order": Try.REFUSED, "undo take_payment": [Try.TRANSIENT] * 5})
    assert path.end == "failed: compensation of take_payment failed"
    assert path.blamed == {"take_payment"} and not path.violations
    assert path.undone == {"reserve_stock"} and "take_payment" in path.took_effect


def test_a_charge_whose_every_reply_is_lost_is_refunded() -> None:
    path = ORDER.walk({"take_payment": [Try.LOST_REPLY] * 3})
    assert path.end == "compensated" and not path.violations
    assert path.undone == {"reserve_stock", "take_payment"}


def test_a_charge_that_never_reached_payment_is_refunded_all_the_same() -> None:
    # Nobody can tell the command was lost: the refund is sent to be sure, and undoes nothing.
    path = ORDER.walk({"take_payment": [Try.LOST_COMMAND] * 3})
    assert path.end == "compensated" and "take_payment" not in path.took_effect
    assert "RefundPayment" in [
        r.event.command_type for r in path.records if r.event.type == "StepRequested"
    ]  # type: ignore[union-attr]


def test_a_late_reply_is_the_steps_answer_and_a_duplicate_is_ignored() -> None:
    path = ORDER.walk({"reserve_stock": Try.LATE, "take_payment": Try.DUPLICATE})
    assert path.end == "completed" and not path.violations
    # The answer to the try that timed out came before its retry: no second try.
    assert path.state.step("reserve_stock").attempts == 1
    assert path.events[:5] == [
        "SagaStarted", "StepRequested", "StepTimedOut", "RetryScheduled", "StepSucceeded"
    ]  # fmt: skip
    assert path.events.count("ReplyIgnored") == 1


def test_the_sale_is_tried_until_it_answers_past_the_pivot() -> None:
    path = ORDER.walk({"confirm_stock": [Try.TRANSIENT] * 7}, on=CASH)
    assert path.end == "completed" and path.state.step("confirm_stock").attempts == 8


def test_a_broken_core_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # A core that forgets the pivot rule undoes the steps before a sale that may have
    # been made: the walk says so.
    monkeypatch.setattr("saga.core.decide.irreversible", lambda *_: [])
    path = ORDER.walk({"confirm_stock": [Try.EFFECT_UNKNOWN, Try.REFUSED]}, on=CASH)
    assert any("undone past the pivot" in v for v in path.violations), path.violations


def test_a_core_that_forgets_an_unknown_effect_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # A core that takes every failed step to have done nothing leaves a charge whose reply
    # was lost in place, and calls the saga compensated: the walk says so.
    real = StepFailed
    monkeypatch.setattr(
        "saga.core.decide.StepFailed", lambda **kw: real(**{**kw, "effect_unknown": False})
    )
    path = ORDER.walk({"take_payment": [Try.LOST_REPLY] * 3})
    assert path.violations == (
        "take_payment took effect and was left undone, yet the saga ended compensated",
    )


def test_a_saga_left_waiting_for_nothing_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # A core that lets its timers pass unheeded never retries the charge: the walk says the
    # saga stopped without ending.
    monkeypatch.setattr("saga.core.decide._on_timer", lambda draft, timer: None)
    path = ORDER.walk({"take_payment": Try.TRANSIENT})
    assert path.violations == ("the saga stopped running with nothing to wait for",)


def test_a_compensation_done_twice_is_caught() -> None:
    # Two compensations under two keys: the participants' record says so, whatever the log.
    world = World.start(ORDER.definition, ORDER.inputs[CARD].value, ORDER.replies)
    while (need := world.run()) is not None:
        world.choose(need, Behaviour((Try.REFUSED,)) if need.step == "create_order" else OK)
    assert world.state.status == "compensated" and not check_end(world)
    world.undone["reserve_stock"].add("verify-1:reserve_stock:compensate:replay1")
    assert check_end(world) == ["reserve_stock was undone twice"]


def test_a_failed_end_is_put_down_to_the_step_it_comes_from() -> None:
    path = ORDER.walk({"confirm_stock": [Try.EFFECT_UNKNOWN, Try.REFUSED]}, on=CASH)
    assert path.end == "failed: confirm_stock did not finish past the pivot"
    assert path.blamed == {"confirm_stock"} and not path.violations


@pytest.mark.parametrize("path", list(ORDER.paths(max_faults=1)), ids=str)
def test_every_path_with_one_fault_keeps_every_invariant(path: SagaPath) -> None:
    assert not path.violations


ACTIONS = [f"{undo}{s.name}" for s in ORDER.definition.steps for undo in ("", "undo ")]
tries = st.lists(st.sampled_from(list(Try)), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(ACTIONS), tries, max_size=4), st.sampled_from([CARD, CASH]))
@example({"confirm_stock": [Try.EFFECT_UNKNOWN, Try.REFUSED]}, CASH)
def test_any_script_keeps_every_invariant(script: dict[str, list[Try]], on: int) -> None:
    path = ORDER.walk(script, on=on)
    assert not path.violations, f"{path}: {path.violations}"
    assert path.state.terminal
