"""Replaying a failed order saga, for each way it can fail: one table, then the rules it rests on."""

import json

import pytest

from saga.core.decide import CancelSaga, ReplaySaga, idempotency_key
from saga.core.events import record_from_json
from saga.core.policy import COMPENSATION_RETRY
from saga.core.replay import ReplayPlan, replay_plan
from saga.core.state import MAX_SUPERSEDED, SagaState, fold
from tests.shop_saga import ORDER_SAGA
from tests.unit.sagas import Run

OK = "ok"
TIMEOUT = "timeout"
TRANSIENT = "transient"
MALFORMED = "malformed"  # a reply of the expected type whose payload breaks its contract
UNCLEAR = "unclear"  # a refusal that says it cannot tell whether the work was done
TRANSIENT_UNCLEAR = "transient_unclear"  # failed for now, and the work may have been done


def answer(run: Run, move: str) -> None:
    """Answer the command the saga awaits (letting a scheduled retry come first)."""
    if not run.outbox:
        run.retry_due()
    match move:
        case "ok":
            run.succeed()
        case "timeout":
            run.time_out()
        case "transient":
            run.fail("busy", transient=True)
        case "malformed":
            run.reply("StockConfirmed", {"confirmed": "perhaps"})
        case "unclear":
            run.reply("CommandFailed", {"reason": "lost_track", "effect_unknown": True})
        case "transient_unclear":
            failure = {"reason": "busy", "transient": True, "effect_unknown": True}
            run.reply("CommandFailed", failure)
        case reason:
            run.fail(reason)


REFUND_RAN_OUT = [OK, OK, "unknown_vendor", *[TRANSIENT] * COMPENSATION_RETRY.max_attempts, OK]
# confirm_stock's try got no reply in time, and its retry was refused: it may have taken
# effect (the first try may have worked), and it cannot be undone.
SALE_UNKNOWN = [OK, OK, OK, TIMEOUT, "no_reservation"]
ASK_SALE = ("ConfirmStock", "saga1:confirm_stock:execute")

CARD, CASH = "Credit Card", "Cash on Delivery"
# (name, payment method, answers until the saga fails, what the replay sends at once (type,
# idempotency key), answers after the replay, status at the end, every command sent after
# the replay)
REPLAYS = [
    (
        "a compensation that ran out of tries is tried again under a key of its own",
        CARD,
        REFUND_RAN_OUT,
        [("RefundPayment", "saga1:take_payment:compensate:replay1")],
        [OK],
        "compensated",
        ["RefundPayment"],
    ),
    (
        "a refused compensation is tried again; what was undone stays undone",
        CARD,
        [OK, OK, "unknown_vendor", "ledger_locked", OK],
        [("RefundPayment", "saga1:take_payment:compensate:replay1")],
        [OK],
        "compensated",
        ["RefundPayment"],
    ),
    (
        "two refused compensations are both tried again, in reverse order",
        CARD,
        [OK, OK, "unknown_vendor", "ledger_locked", "stock_locked"],
        [("RefundPayment", "saga1:take_payment:compensate:replay1")],
        [OK, OK],
        "compensated",
        ["RefundPayment", "ReleaseStock"],
    ),
    (
        "a compensation refused again fails the saga again",
        CARD,
        [OK, OK, "unknown_vendor", "ledger_locked", OK],
        [("RefundPayment", "saga1:take_payment:compensate:replay1")],
        ["ledger_locked"],
        "failed",
        ["RefundPayment"],
    ),
    (
        "a sale whose effect is unknown is asked again and did take effect: completed",
        CARD,
        SALE_UNKNOWN,
        [ASK_SALE],
        [OK],
        "completed",
        ["ConfirmStock"],
    ),
    (
        "a sale whose effect is unknown is asked again and did not: the rest is undone",
        CARD,
        SALE_UNKNOWN,
        [ASK_SALE],
        ["no_reservation", OK, OK, OK],
        "compensated",
        ["ConfirmStock", "CancelOrder", "RefundPayment", "ReleaseStock"],
    ),
    (
        "asked again, the sale still leaves its effect open: it fails again, nothing undone",
        CARD,
        SALE_UNKNOWN,
        [ASK_SALE],
        [TIMEOUT, "no_reservation"],
        "failed",
        ["ConfirmStock", "ConfirmStock"],
    ),
    (
        "asked again, the sale is still out of reach: it is tried until it answers",
        CARD,
        SALE_UNKNOWN,
        [ASK_SALE],
        [TIMEOUT, TRANSIENT, TIMEOUT, OK],
        "completed",
        ["ConfirmStock"] * 4,
    ),
    (
        "a sale whose reply broke the protocol is asked again",
        CARD,
        [OK, OK, OK, MALFORMED],
        [ASK_SALE],
        [OK],
        "completed",
        ["ConfirmStock"],
    ),
    (
        "a sale refused with its effect unknown is asked again",
        CARD,
        [OK, OK, OK, UNCLEAR],
        [ASK_SALE],
        [OK],
        "completed",
        ["ConfirmStock"],
    ),
    (
        "a sale that failed for now, its effect unknown, then refused, is asked again",
        CARD,
        [OK, OK, OK, TRANSIENT_UNCLEAR, "no_reservation"],
        [ASK_SALE],
        ["no_reservation", OK, OK, OK],
        "compensated",
        ["ConfirmStock", "CancelOrder", "RefundPayment", "ReleaseStock"],
    ),
    (
        "asked again, the sale answers that it cannot tell: it fails again, nothing undone",
        CARD,
        SALE_UNKNOWN,
        [ASK_SALE],
        [UNCLEAR],
        "failed",
        ["ConfirmStock"],
    ),
    (
        "the same, cash on delivery: nothing was charged, nothing is refunded",
        CASH,
        [OK, OK, TIMEOUT, "no_reservation"],
        [ASK_SALE],
        ["no_reservation", OK, OK],
        "compensated",
        ["ConfirmStock", "CancelOrder", "ReleaseStock"],
    ),
]


@pytest.mark.parametrize(
    ("method", "before", "replayed", "after", "status", "sent_after"),
    [r[1:] for r in REPLAYS],
    ids=[r[0] for r in REPLAYS],
)
def test_every_way_a_saga_fails_replays_its_own_way(
    method: str,
    before: list[str],
    replayed: list[tuple[str, str]],
    after: list[str],
    status: str,
    sent_after: list[str],
) -> None:
    run = Run.start(payment_method=method)
    for move in before:
        answer(run, move)
    assert run.state.status == "failed"
    sent_before = len(run.sent)
    decision = run.apply(ReplaySaga(by="operator"))
    assert [(c.envelope.type, c.envelope.idempotency_key) for c in decision.commands] == replayed
    for move in after:
        answer(run, move)
    assert run.state.status == status
    assert run.sent[sent_before:] == sent_after
    assert fold([r for d in run.decisions for r in d.records]) == run.state


def test_replay_never_undoes_a_step_before_a_sale_that_may_have_taken_effect() -> None:
    run = Run.start()
    for move in SALE_UNKNOWN:
        answer(run, move)
    assert replay_plan(ORDER_SAGA, run.state) == ReplayPlan("finish", ask=("confirm_stock",))
    for _ in range(3):  # replayed again and again: the answer is never clear
        decision = run.apply(ReplaySaga(by="operator"))
        assert [c.envelope.type for c in decision.commands] == ["ConfirmStock"]
        answer(run, TIMEOUT)
        answer(run, "no_reservation")
        assert run.state.status == "failed"
    assert not [s for s in run.sent if s in ("CancelOrder", "RefundPayment", "ReleaseStock")]
    assert [s.status for s in run.state.steps] == ["succeeded"] * 3 + ["failed"]


def test_the_reason_of_a_sale_that_may_have_taken_effect_tells_the_operator_what_to_do() -> None:
    run = Run.start()
    for move in SALE_UNKNOWN:
        answer(run, move)
    assert run.state.reason == (
        "confirm_stock failed (no_reservation) but may have taken effect, as an earlier try "
        "of it may have worked, and it cannot be undone, so nothing was undone. Find out "
        "from stock whether confirm_stock took effect (repair its records if they are "
        "wrong); then saga replay sends confirm_stock again under the same idempotency key "
        "and goes on from the answer: it finishes the saga if it took effect, and undoes "
        "the steps before it if it did not."
    )


def test_a_reply_that_does_not_say_whether_it_worked_is_named_as_such() -> None:
    run = Run.start()
    for move in [OK, OK, OK, MALFORMED]:
        answer(run, move)
    assert (run.state.reason or "").startswith(
        "confirm_stock failed (protocol_error) but may have taken effect, as its answer "
        "does not say whether it did, and it cannot be undone"
    )


def test_a_second_replay_gives_what_it_tries_again_the_next_key() -> None:
    run = Run.start()
    for move in [OK, OK, "unknown_vendor", "ledger_locked", OK]:
        answer(run, move)
    run.apply(ReplaySaga(by="operator"))
    answer(run, "ledger_locked")
    decision = run.apply(ReplaySaga(by="operator"))
    (again,) = decision.commands
    assert again.envelope.idempotency_key == "saga1:take_payment:compensate:replay2"
    # The release was done the first time: it is neither sent again nor renewed.
    assert run.sent.count("ReleaseStock") == 1


def test_a_saga_that_has_not_failed_cannot_be_replayed() -> None:
    for moves in ([], [OK, OK, OK, OK], ["insufficient_stock"]):
        run = Run.start()
        for move in moves:
            answer(run, move)
        assert replay_plan(ORDER_SAGA, run.state) is None
        assert run.apply(ReplaySaga(by="operator")).records == ()


def test_undone_after_a_replay_asked_the_sale_a_failed_compensation_is_replayed_again() -> None:
    run = Run.start()
    for move in SALE_UNKNOWN:
        answer(run, move)
    run.apply(ReplaySaga(by="operator"))
    for move in ["no_reservation", OK, "ledger_locked", OK]:  # the refund fails
        answer(run, move)
    assert run.state.status == "failed"
    assert replay_plan(ORDER_SAGA, run.state) == ReplayPlan("undo", retry=("take_payment",))
    decision = run.apply(ReplaySaga(by="operator"))
    assert [(c.envelope.type, c.envelope.idempotency_key) for c in decision.commands] == [
        ("RefundPayment", "saga1:take_payment:compensate:replay2")
    ]
    answer(run, OK)
    assert run.state.status == "compensated"


def test_a_saga_going_forward_after_a_replay_cannot_be_cancelled() -> None:
    run = Run.start()
    for move in SALE_UNKNOWN:
        answer(run, move)
    run.apply(ReplaySaga(by="operator"))
    assert run.apply(CancelSaga(by="ann@example.com")).records == ()


def test_an_answer_to_a_try_made_before_the_saga_failed_answers_the_step_asked_again() -> None:
    run = Run.start()
    for _ in range(3):
        answer(run, OK)
    first = run.pending  # the sale's first try: it times out; its retry is refused
    answer(run, TIMEOUT)
    answer(run, "no_reservation")
    run.apply(ReplaySaga(by="operator"))
    # The participant answers the new try with the reply it gave first, as it was.
    late = run.reply("StockConfirmed", {"confirmed": True}, to=first, message_id="r-first")
    assert "StepSucceeded" in [r.event.type for r in late.records]
    assert run.state.status == "completed"


def test_after_many_tries_an_answer_to_the_first_one_still_counts() -> None:
    run = Run.start()
    for _ in range(3):
        answer(run, OK)
    first = run.pending
    for _ in range(MAX_SUPERSEDED * 2):
        answer(run, TIMEOUT)
        run.retry_due()
    assert len(run.state.superseded) <= MAX_SUPERSEDED  # the snapshot stays small
    run.reply("StockConfirmed", {"confirmed": True}, to=first)
    assert run.state.status == "completed"


def test_a_log_written_before_replays_had_a_direction_folds_as_an_undo() -> None:
    run = Run.start()
    for move in [OK, OK, "unknown_vendor", "ledger_locked", OK]:
        answer(run, move)
    run.apply(ReplaySaga(by="operator"))
    stored = [r.model_dump(mode="json") for d in run.decisions for r in d.records]
    for record in stored:
        if record["event"]["type"] == "SagaReplayed":
            record["event"] = {"type": "SagaReplayed", "by": "operator"}  # as written then
    old = fold(record_from_json(json.dumps(r)) for r in stored)
    assert old == run.state and old.status == "compensating"


def test_a_snapshot_without_the_fields_added_later_reads_as_the_same_state() -> None:
    run = Run.start()
    for move in [OK, OK, "unknown_vendor", "ledger_locked", OK]:
        answer(run, move)
    run.apply(ReplaySaga(by="operator"))
    snapshot = json.loads(run.state.model_dump_json(exclude_defaults=True))
    assert "superseded" not in snapshot and "asked" not in json.dumps(snapshot)
    loaded = SagaState.model_validate(snapshot)
    assert loaded == run.state
    assert idempotency_key(loaded, "take_payment", "compensate").endswith(":replay1")
