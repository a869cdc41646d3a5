"""The RabbitMQ transport on a real broker: publish, consume, ack, redelivery, dead letters."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aio_pika
import pytest

from contracts.envelope import Envelope
from contracts.topology import Topology
from saga.transport import (
    ACK,
    DEAD_QUEUE_HEADER,
    DEAD_REASON_HEADER,
    DELIVERY_LIMIT,
    DeadLetter,
    Delivery,
    Outcome,
    RabbitTransport,
    delete_topology,
)
from tests.servers import RABBITMQ_URL
from tests.waiting import eventually


def envelope(n: int = 1) -> Envelope:
    return Envelope(
        message_id=f"m{n}",
        saga_id="s1",
        correlation_id="s1",
        type="ReserveStock",
        sent_at=datetime.now(UTC),
        payload={"n": n},
    )


@pytest.fixture
async def transport(
    amqp: aio_pika.abc.AbstractConnection, namespace: str
) -> AsyncIterator[RabbitTransport]:
    t = RabbitTransport(RABBITMQ_URL, Topology(namespace), prefetch=10)
    await t.connect()
    yield t
    await t.close()


async def queue_depth(amqp: aio_pika.abc.AbstractConnection, name: str) -> int:
    channel = await amqp.channel()
    queue = await channel.declare_queue(name, passive=True)
    count = queue.declaration_result.message_count
    await channel.close()
    return int(count or 0)


async def test_a_published_command_is_consumed_and_acked(
    transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection
) -> None:
    seen: list[Envelope] = []

    async def handler(delivery: Delivery) -> Outcome:
        seen.append(Envelope.from_bytes(delivery.body))
        return ACK

    sent = envelope(1)
    await transport.publish_command("stock", sent)
    await transport.consume(transport.topology.participant_queue("stock"), handler)
    await eventually(lambda: asyncio.sleep(0, seen), what="the command arrives")
    assert seen == [sent]
    await transport.stop_consuming()
    assert await queue_depth(amqp, transport.topology.participant_queue("stock")) == 0


async def test_a_failing_handler_gets_the_message_again(transport: RabbitTransport) -> None:
    deliveries: list[Delivery] = []

    async def handler(delivery: Delivery) -> Outcome:
        deliveries.append(delivery)
        if len(deliveries) == 1:
            raise RuntimeError("a bug on the first try")
        return ACK

    await transport.publish_reply(envelope(2))
    await transport.consume(transport.topology.orchestrator_queue, handler)
    await eventually(lambda: asyncio.sleep(0, len(deliveries)), until=lambda n: n >= 2)
    assert deliveries[0].body == deliveries[1].body
    assert deliveries[1].redelivered


async def test_a_message_held_by_a_dead_consumer_is_redelivered(namespace: str) -> None:
    first = RabbitTransport(RABBITMQ_URL, Topology(namespace))
    await first.connect()
    held = asyncio.Event()

    async def stuck(delivery: Delivery) -> Outcome:
        held.set()
        await asyncio.sleep(3600)
        return ACK

    await first.publish_command("payment", envelope(3))
    await first.consume(first.topology.participant_queue("payment"), stuck)
    await asyncio.wait_for(held.wait(), 10)
    await first.close()  # dies without acking

    second = RabbitTransport(RABBITMQ_URL, Topology(namespace))
    await second.connect()
    got: list[Delivery] = []

    async def handler(delivery: Delivery) -> Outcome:
        got.append(delivery)
        return ACK

    await second.consume(second.topology.participant_queue("payment"), handler)
    await eventually(lambda: asyncio.sleep(0, got), what="the redelivery")
    assert Envelope.from_bytes(got[0].body).message_id == "m3"
    assert got[0].redelivered
    await second.close()


async def dead_letters(
    amqp: aio_pika.abc.AbstractConnection, topology: Topology
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    channel = await amqp.channel()
    queue = await channel.declare_queue(topology.dead_letter_queue, passive=True)
    found = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        found.append(message)
    await channel.close()
    return found


async def test_a_dead_lettered_message_keeps_its_body_and_reason(
    transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection
) -> None:
    async def handler(delivery: Delivery) -> Outcome:
        return DeadLetter("unknown saga s1")

    await transport.publish_reply(envelope(4))
    await transport.consume(transport.topology.orchestrator_queue, handler)
    parked = await eventually(lambda: dead_letters(amqp, transport.topology), what="a dead letter")
    assert Envelope.from_bytes(parked[0].body).message_id == "m4"
    assert parked[0].headers[DEAD_REASON_HEADER] == "unknown saga s1"
    assert parked[0].headers[DEAD_QUEUE_HEADER] == transport.topology.orchestrator_queue
    assert await queue_depth(amqp, transport.topology.orchestrator_queue) == 0


async def test_a_message_that_always_fails_ends_in_the_dead_letters(
    transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection
) -> None:
    attempts = 0

    async def handler(delivery: Delivery) -> Outcome:
        nonlocal attempts
        attempts += 1
        raise ValueError("poison")

    await transport.publish_command("order", envelope(5))
    await transport.consume(transport.topology.participant_queue("order"), handler)
    parked = await eventually(
        lambda: dead_letters(amqp, transport.topology), within=30, what="the poison dead-lettered"
    )
    assert Envelope.from_bytes(parked[0].body).message_id == "m5"
    assert attempts == DELIVERY_LIMIT + 1
    reason = parked[0].headers[DEAD_REASON_HEADER]
    assert reason == f"handler failed {DELIVERY_LIMIT + 1} times: ValueError('poison')"


async def test_namespaces_do_not_see_each_other(
    transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection
) -> None:
    other = Topology(transport.topology.namespace + "x")
    neighbour = RabbitTransport(RABBITMQ_URL, other)
    await neighbour.connect()
    try:
        await neighbour.publish_command("stock", envelope(6))
        assert await queue_depth(amqp, transport.topology.participant_queue("stock")) == 0
        assert await queue_depth(amqp, other.participant_queue("stock")) == 1
    finally:
        await delete_topology(await amqp.channel(), other)
        await neighbour.close()
