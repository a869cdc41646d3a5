"""`saga show` and the saga views on sagas driven through the core: what happened, in the
order it happened, and nothing undone shown as if it stood."""

import io
from collections.abc import Callable
from typing import Any

import pytest
from rich.console import Console

from saga.cli.sagas import print_saga, saga_json
from saga.core.decide import CancelSaga, ReplaySaga
from saga.core.policy import COMPENSATION_RETRY, STEP_RETRY
from saga.views import saga_view
from tests.shop_saga import ORDER_SAGA
from tests.unit.sagas import Run


def shown(run: Run) -> tuple[dict[str, Any], str]:
    """`saga show --json` and `saga show` of the run's saga."""
    records = [r for d in run.decisions for r in d.records]
    view = {**saga_view(run.state, ORDER_SAGA).model_dump(mode="json"), "customer": "ann"}
    text = io.StringIO()
    print_saga(Console(file=text, width=250, no_color=True), run.state, records, view)
    return saga_json(run.state, records, view), text.getvalue()


def rows(run: Run) -> list[tuple[str, str, int, str]]:
    """The timeline as (step, action, attempts, outcome), in the order shown."""
    return [
        (row["step"], row["action"], row["attempts"], row["outcome"])
        for row in shown(run)[0]["timeline"]
    ]


def unknown_vendor() -> Run:
    """Stock reserved and payment taken, then the order refused: both undone."""
    run = Run.start()
    run.succeed()
    run.succeed()
    run.fail("unknown_vendor")
    run.succeed()  # refund
    run.succeed()  # release
    return run


def payment_timed_out(refund: str = "ok") -> Run:
    """The charge never answers: it may have worked, so it is refunded like one that did."""
    run = Run.start()
    run.succeed()
    for _ in range(STEP_RETRY.max_attempts - 1):
        run.time_out()
        run.retry_due()
    run.time_out()
    if refund == "ok":
        run.succeed()
        run.succeed()  # release
    elif refund == "refused":
        run.fail("ledger_locked")
        run.succeed()  # release
    return run


def refund_refused_then_replayed() -> Run:
    """The refund fails twice and the saga fails; after a fix, a replay refunds."""
    run = Run.start()
    run.succeed()
    run.succeed()
    run.fail("unknown_vendor")
    run.fail("ledger_locked", transient=True)
    run.retry_due()
    run.fail("ledger_locked")
    run.succeed()  # release
    assert run.state.status == "failed"
    run.apply(ReplaySaga(by="operator"))
    run.succeed()
    return run


def test_the_timeline_runs_by_time_with_each_execution_and_compensation_a_row() -> None:
    assert rows(unknown_vendor()) == [
        ("reserve_stock", "execute", 1, "succeeded, undone"),
        ("take_payment", "execute", 1, "succeeded, undone"),
        ("create_order", "execute", 1, "failed: unknown_vendor"),
        ("take_payment", "compensate", 1, "compensated"),
        ("reserve_stock", "compensate", 1, "compensated"),
        ("confirm_stock", "execute", 0, "not run"),
    ]
    timeline = shown(unknown_vendor())[0]["timeline"]
    starts = [row["start"] for row in timeline if row["start"] is not None]
    assert starts == sorted(starts) and len(starts) == 5


def test_steps_that_never_started_come_last_in_step_order() -> None:
    run = Run.start(payment_method="Cash on Delivery")
    run.succeed()
    assert rows(run) == [
        ("reserve_stock", "execute", 1, "succeeded"),
        ("create_order", "execute", 1, "running"),
        ("take_payment", "execute", 0, "skipped"),
        ("confirm_stock", "execute", 0, "not run"),
    ]


@pytest.mark.parametrize(
    ("refund", "outcome"),
    [
        ("ok", "failed: timeout; effect unknown, so undone"),
        ("refused", "failed: timeout; effect unknown, undo failed"),
        ("waiting", "failed: timeout; effect unknown, so being undone"),
    ],
)
def test_a_failed_step_whose_effect_is_unknown_shows_its_reason_and_its_undo(
    refund: str, outcome: str
) -> None:
    run = payment_timed_out(refund)
    (payment,) = [r for r in rows(run) if r[:2] == ("take_payment", "execute")]
    assert payment == ("take_payment", "execute", STEP_RETRY.max_attempts, outcome)


def test_a_replayed_compensation_shows_the_attempts_of_each_round() -> None:
    run = refund_refused_then_replayed()
    assert rows(run) == [
        ("reserve_stock", "execute", 1, "succeeded, undone"),
        ("take_payment", "execute", 1, "succeeded, undone"),
        ("create_order", "execute", 1, "failed: unknown_vendor"),
        ("take_payment", "compensate", 2, "failed: ledger_locked"),
        ("reserve_stock", "compensate", 1, "compensated"),
        ("take_payment", "compensate", 1, "compensated"),
        ("confirm_stock", "execute", 0, "not run"),
    ]
    assert [row["replay"] for row in shown(run)[0]["timeline"]] == [0, 0, 0, 0, 0, 1, 0]
    assert "compensate (replay 1)" in shown(run)[1]


def test_a_compensation_waiting_to_retry_says_so() -> None:
    run = Run.start()
    run.succeed()
    run.fail("insufficient_funds")
    run.fail("stock_locked", transient=True)
    assert COMPENSATION_RETRY.max_attempts > 1
    assert rows(run)[2] == ("reserve_stock", "compensate", 1, "waiting to retry: stock_locked")


def test_the_summary_of_a_compensated_saga_holds_no_undone_value() -> None:
    view, text = shown(unknown_vendor())
    assert "order_id" not in view and "amount" not in view  # only the definition's summary
    assert view["summary"] == {"order_id": None, "amount": None}
    assert view["undone"] == {"amount": "10.00"}
    assert "amount 10.00 (undone)" in text
    api = saga_view(unknown_vendor().state, ORDER_SAGA)
    assert (api.summary, api.undone) == (view["summary"], view["undone"])


def test_a_result_whose_undo_failed_stands() -> None:
    run = Run.start()
    run.succeed()
    run.fail("insufficient_funds")
    run.fail("stock_locked")  # the release is refused: the reservation stands
    assert run.state.status == "failed"
    view, text = shown(run)
    assert (view["summary"]["amount"], view["undone"]) == ("10.00", {})
    assert "amount 10.00" in text and "undone" not in text.split("timeline")[0]


def test_a_completed_saga_shows_its_summary_as_it_stands() -> None:
    run = Run.start()
    for _ in range(4):
        run.succeed()
    view, text = shown(run)
    assert view["summary"] == {"order_id": "ord_1", "amount": "10.00"}
    assert view["undone"] == {}
    assert "order_id ord_1, amount 10.00" in text


def cancelled_while_charging() -> Run:
    run = Run.start()
    run.succeed()
    run.apply(CancelSaga(by="ann@example.com"))
    return run


SAGAS: dict[str, Callable[[], Run]] = {
    "just started": Run.start,
    "unknown vendor": unknown_vendor,
    "payment timed out": payment_timed_out,
    "refund refused": lambda: payment_timed_out("refused"),
    "replayed": refund_refused_then_replayed,
    "cancelled": cancelled_while_charging,
}


@pytest.mark.parametrize("make", SAGAS.values(), ids=SAGAS.keys())
def test_nothing_shown_is_python_none(make: Callable[[], Run]) -> None:
    _, text = shown(make())
    assert "None" not in text
