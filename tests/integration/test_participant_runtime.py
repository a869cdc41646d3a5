"""The shop's participants on the SDK's runtime, on real Redis and RabbitMQ: what its log
says of each command, and what a participant that fails on a command answers."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aio_pika
import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from contracts.envelope import Envelope
from saga.participant import ParticipantRuntime
from saga.rabbit import RabbitTransport
from saga.transport import ACK, Delivery
from services.payment import PaymentService, payment
from services.stock import StockService, stock
from tests.waiting import eventually

pytestmark = pytest.mark.either_redis


def command(kind: str, payload: dict[str, Any], key: str, n: int) -> Delivery:
    envelope = Envelope(
        message_id=f"m{n}",
        saga_id="tenant:s-1",
        correlation_id="tenant:s-1",
        type=kind,
        sent_at=datetime.now(UTC),
        payload=payload,
        idempotency_key=key,
    )
    return Delivery(body=envelope.to_bytes())


async def test_the_log_line_of_a_replayed_compensation_names_its_step_action_and_replay(
    redis: Redis, namespace: str, transport: RabbitTransport
) -> None:
    await PaymentService(redis, namespace).deposit("ann@example.com", Decimal("20.00"))
    runtime = ParticipantRuntime(payment, transport, redis, namespace=namespace)
    customer = {"customer": "ann@example.com"}
    with capture_logs() as logs:
        charge = command(
            "ChargePayment",
            customer | {"amount": "5.00"},
            "tenant:s-1:take_payment:execute",
            1,
        )
        assert await runtime.handle(charge) == ACK
        refund = command("RefundPayment", customer, "tenant:s-1:take_payment:compensate:replay1", 2)
        assert await runtime.handle(refund) == ACK
        odd = command("RefundPayment", customer, "not-a-saga-key", 3)
        assert await runtime.handle(odd) == ACK
    handled = [
        {k: line.get(k) for k in ("idempotency_key", "step", "action", "replay", "outcome")}
        for line in logs
        if line["event"] == "command handled"
    ]
    assert handled == [
        {
            "idempotency_key": "tenant:s-1:take_payment:execute",
            "step": "take_payment",
            "action": "execute",
            "replay": 0,
            "outcome": "PaymentCharged",
        },
        {
            "idempotency_key": "tenant:s-1:take_payment:compensate:replay1",
            "step": "take_payment",
            "action": "compensate",
            "replay": 1,
            "outcome": "PaymentRefunded",
        },
        # A key the runtime cannot read names no step (the key as sent is in the line).
        {
            "idempotency_key": "not-a-saga-key",
            "step": None,
            "action": None,
            "replay": None,
            "outcome": "PaymentRefunded",
        },
    ]


async def test_a_command_the_service_fails_on_is_answered_with_the_error_not_requeued(
    redis: Redis, namespace: str, transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection
) -> None:
    await StockService(redis, namespace).set_product("kiwi", quantity=5, price=Decimal("1.00"))
    # A price written by hand: the reservation's script fails on it (a Lua error), on
    # every delivery alike.
    await redis.hset(f"{namespace}:stock:{{stock}}:product:kiwi", "price_cents", "twelve")
    runtime = ParticipantRuntime(stock, transport, redis, namespace=namespace)
    reserve = command(
        "ReserveStock",
        {"items": [{"product_id": "kiwi", "quantity": 1}]},
        "tenant:s-1:reserve_stock:execute",
        1,
    )
    assert await runtime.handle(reserve) == ACK
    channel = await amqp.channel()
    replies = await channel.get_queue(transport.topology.orchestrator_queue, ensure=False)
    reply = await eventually(lambda: replies.get(no_ack=True, fail=False), what="the reply")
    answer = Envelope.from_bytes(reply.body)
    assert (answer.type, answer.causation_id) == ("CommandFailed", "m1")
    detail = answer.payload.pop("detail")
    # Not transient: the same command fails the same way; its effect is unknown, since
    # a script that fails half-way keeps what it wrote, so the saga undoes the step.
    assert answer.payload == {
        "reason": "participant_error",
        "transient": False,
        "effect_unknown": True,
    }
    assert detail.startswith("ResponseError: ") and "attempt to perform arithmetic" in detail, (
        detail
    )
