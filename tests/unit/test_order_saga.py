"""The order saga in the pure core: every path as a table of replies -> events, commands, state."""

import pytest

from saga.core.events import SagaStarted
from saga.core.state import fold
from tests.shop_saga import ORDER_SAGA
from tests.unit.sagas import T0, Run

OK = "ok"

# (name, input changes, answers in order, commands sent, status, reason, step statuses)
PATHS = [
    (
        "happy path",
        {},
        [OK, OK, OK, OK],
        ["ReserveStock", "ChargePayment", "CreateOrder", "ConfirmStock"],
        "completed",
        None,
        ["succeeded", "succeeded", "succeeded", "succeeded"],
    ),
    (
        "cash on delivery skips payment",
        {"payment_method": "Cash on Delivery"},
        [OK, OK, OK],
        ["ReserveStock", "CreateOrder", "ConfirmStock"],
        "completed",
        None,
        ["succeeded", "skipped", "succeeded", "succeeded"],
    ),
    (
        "insufficient stock: nothing to undo",
        {},
        ["insufficient_stock"],
        ["ReserveStock"],
        "compensated",
        "insufficient_stock",
        ["failed", "pending", "pending", "pending"],
    ),
    (
        "price mismatch: nothing to undo",
        {},
        ["price_mismatch"],
        ["ReserveStock"],
        "compensated",
        "price_mismatch",
        ["failed", "pending", "pending", "pending"],
    ),
    (
        "insufficient funds: stock released",
        {},
        [OK, "insufficient_funds", OK],
        ["ReserveStock", "ChargePayment", "ReleaseStock"],
        "compensated",
        "insufficient_funds",
        ["compensated", "failed", "pending", "pending"],
    ),
    (
        "unknown vendor: refund, then release",
        {},
        [OK, OK, "unknown_vendor", OK, OK],
        ["ReserveStock", "ChargePayment", "CreateOrder", "RefundPayment", "ReleaseStock"],
        "compensated",
        "unknown_vendor",
        ["compensated", "compensated", "failed", "pending"],
    ),
    (
        "unknown vendor, cash on delivery: release only",
        {"payment_method": "Cash on Delivery"},
        [OK, "unknown_vendor", OK],
        ["ReserveStock", "CreateOrder", "ReleaseStock"],
        "compensated",
        "unknown_vendor",
        ["compensated", "skipped", "failed", "pending"],
    ),
    (
        "sale cannot be confirmed: everything undone in reverse order",
        {},
        [OK, OK, OK, "no_reservation", OK, OK, OK],
        [
            "ReserveStock",
            "ChargePayment",
            "CreateOrder",
            "ConfirmStock",
            "CancelOrder",
            "RefundPayment",
            "ReleaseStock",
        ],
        "compensated",
        "no_reservation",
        ["compensated", "compensated", "compensated", "failed"],
    ),
    (
        "refund impossible: the rest is still undone, then the saga fails and says why",
        {},
        [OK, OK, "unknown_vendor", "payment_gateway_down", OK],
        ["ReserveStock", "ChargePayment", "CreateOrder", "RefundPayment", "ReleaseStock"],
        "failed",
        "compensation of take_payment failed: payment_gateway_down",
        ["compensated", "compensation_failed", "failed", "pending"],
    ),
    (
        "two compensations impossible: both are named",
        {},
        [OK, OK, "unknown_vendor", "gateway_down", "stock_locked"],
        ["ReserveStock", "ChargePayment", "CreateOrder", "RefundPayment", "ReleaseStock"],
        "failed",
        "compensation of reserve_stock failed: stock_locked; "
        "compensation of take_payment failed: gateway_down",
        ["compensation_failed", "compensation_failed", "failed", "pending"],
    ),
]


def drive(changes: dict[str, str], answers: list[str]) -> Run:
    run = Run.start(**changes)
    for answer in answers:
        if answer == OK:
            run.succeed()
        else:
            run.fail(answer)
    return run


@pytest.mark.parametrize(
    ("changes", "answers", "sent", "status", "reason", "steps"),
    [p[1:] for p in PATHS],
    ids=[p[0] for p in PATHS],
)
def test_every_path(
    changes: dict[str, str],
    answers: list[str],
    sent: list[str],
    status: str,
    reason: str | None,
    steps: list[str],
) -> None:
    run = drive(changes, answers)
    assert run.sent == sent
    assert run.state.status == status
    assert run.state.reason == reason
    assert [s.status for s in run.state.steps] == steps
    assert run.outbox == []
    assert run.state.pending == {}


@pytest.mark.parametrize(("changes", "answers"), [p[1:3] for p in PATHS], ids=[p[0] for p in PATHS])
def test_the_log_folds_to_the_same_state(changes: dict[str, str], answers: list[str]) -> None:
    run = drive(changes, answers)
    records = [r for d in run.decisions for r in d.records]
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    assert fold(records) == run.state


def test_happy_path_events_in_order() -> None:
    run = drive({}, [OK, OK, OK, OK])
    assert run.events == [
        "SagaStarted",
        "StepRequested",
        "StepSucceeded",
        "StepRequested",
        "StepSucceeded",
        "StepRequested",
        "StepSucceeded",
        "StepRequested",
        "StepSucceeded",
        "SagaCompleted",
    ]


def test_failure_events_in_order() -> None:
    run = drive({}, [OK, "insufficient_funds", OK])
    assert run.events == [
        "SagaStarted",
        "StepRequested",
        "StepSucceeded",
        "StepRequested",
        "StepFailed",
        "CompensationStarted",
        "StepRequested",
        "StepCompensated",
        "SagaCompensated",
    ]


def test_started_saga_records_its_definition_and_input() -> None:
    run = Run.start()
    started = run.decisions[0].records[0]
    assert isinstance(started.event, SagaStarted)
    assert started.event.steps == [s.name for s in ORDER_SAGA.steps]
    assert started.event.definition_version == ORDER_SAGA.version
    assert started.at == T0
    assert run.state.status == "running"
    assert run.pending.participant == "stock"


def test_commands_carry_ids_for_tracing_and_deduplication() -> None:
    run = Run.start()
    first = run.pending.envelope
    assert first.correlation_id == "saga1"
    assert first.causation_id is None
    assert first.idempotency_key == "saga1:reserve_stock:execute"
    run.succeed()
    charge = run.pending.envelope
    assert charge.causation_id == f"reply-{first.message_id}"
    assert charge.idempotency_key == "saga1:take_payment:execute"
    assert charge.payload == {"customer": "ann@example.com", "amount": "10.00"}


def test_compensation_has_its_own_idempotency_key() -> None:
    run = drive({}, [OK, "insufficient_funds"])
    assert run.pending.envelope.type == "ReleaseStock"
    assert run.pending.envelope.idempotency_key == "saga1:reserve_stock:compensate"


def test_order_is_created_at_the_stock_services_prices() -> None:
    run = drive({"items": [{"product_id": "p1", "quantity": 2, "unit_price": "5.00"}]}, [OK, OK])
    create = run.pending.envelope
    assert create.type == "CreateOrder"
    assert create.payload["items"] == [{"product_id": "p1", "quantity": 2, "price": "5.00"}]
    assert create.payload["amount"] == "10.00"
    assert create.payload["vendor"] == "shop@example.com"


def test_a_repeated_reply_is_recorded_and_changes_nothing() -> None:
    run = Run.start()
    reserve = run.pending
    run.succeed()
    before = run.state
    decision = run.reply("StockReserved", {"items": [], "amount": "1.00"}, to=reserve)
    assert [r.event.type for r in decision.records] == ["ReplyIgnored"]
    assert decision.commands == ()
    assert (
        decision.state.model_copy(
            update={"version": before.version, "updated_at": before.updated_at}
        )
        == before
    )


def test_a_reply_after_the_end_is_recorded_as_such() -> None:
    run = drive({}, ["insufficient_stock"])
    stray = run.decisions[0].commands[0]
    decision = run.reply("StockReserved", {"items": [], "amount": "1.00"}, to=stray)
    (record,) = decision.records
    assert record.event.type == "ReplyIgnored"
    assert record.event.why == "saga_terminal"  # type: ignore[union-attr]
    assert decision.state.status == "compensated"


@pytest.mark.parametrize(
    ("reply_type", "payload", "detail"),
    [
        ("OrderCreated", {"order_id": "x"}, "expected StockReserved, got OrderCreated"),
        ("StockReserved", {"amount": "ten"}, "malformed StockReserved"),
        ("CommandFailed", {"detail": "no reason given"}, "malformed CommandFailed"),
    ],
)
def test_a_reply_breaking_the_protocol_fails_the_step(
    reply_type: str, payload: dict[str, object], detail: str
) -> None:
    run = Run.start()
    run.reply(reply_type, payload)
    failed = next(r.event for d in run.decisions for r in d.records if r.event.type == "StepFailed")
    assert detail in (failed.detail or "")  # type: ignore[union-attr]
    # The stock may have been reserved all the same: it is released, to be sure.
    assert run.pending.envelope.type == "ReleaseStock"
    run.succeed()
    assert (run.state.status, run.state.reason) == ("compensated", "protocol_error")
    assert run.state.steps[0].status == "compensated"


def test_attempts_are_counted_per_action() -> None:
    run = drive({}, [OK, "insufficient_funds"])
    requested = [
        r.event for d in run.decisions for r in d.records if r.event.type == "StepRequested"
    ]
    assert [(e.step, e.action, e.attempt) for e in requested] == [  # type: ignore[union-attr]
        ("reserve_stock", "execute", 1),
        ("take_payment", "execute", 1),
        ("reserve_stock", "compensate", 1),
    ]
    assert run.state.steps[0].attempts == 1
    assert run.state.steps[0].compensation_attempts == 1


def test_step_timings_come_from_the_injected_clock() -> None:
    run = drive({}, [OK, OK])
    reserve, payment = run.state.steps[0], run.state.steps[1]
    assert reserve.started_at == T0
    assert reserve.ended_at is not None and (reserve.ended_at - T0).total_seconds() == 1
    assert payment.attempts == 1
    assert payment.ended_at is not None and (payment.ended_at - T0).total_seconds() == 2
