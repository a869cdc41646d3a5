"""One contract for every transport: the real RabbitMQ one and the in-memory one pass the
same tests (publish, consume, ack, redelivery, dead letters, the delivery limit)."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiormq
import pytest
from redis.exceptions import (
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)

from contracts.envelope import Envelope
from contracts.topology import Participant, Topology
from saga.amqp_nodes import GROUP_SIZE_ARGUMENT, connect_pika
from saga.core.policy import Backoff
from saga.memory import InMemoryTransport
from saga.rabbit import RabbitTransport, delete_topology
from saga.transport import (
    ACK,
    DEAD_ID_HEADER,
    DEAD_QUEUE_HEADER,
    DEAD_REASON_HEADER,
    DELIVERY_LIMIT,
    PUBLISH_ERRORS,
    DeadLetter,
    Delivery,
    Outcome,
    Transport,
    TransportUnavailable,
)
from tests.servers import RABBITMQ_URL, SHOP_PARTICIPANTS, close_connections_named, rabbitmq_or_skip
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


async def connected(transport: RabbitTransport) -> AsyncIterator[RabbitTransport]:
    """The transport connected (the broker must be up), then closed and its topology
    deleted, with the queues it declared since."""
    url = ",".join(transport.nodes)  # a test may point the transport elsewhere
    if url == RABBITMQ_URL:
        connection = await rabbitmq_or_skip()
        await connection.close()
    await transport.connect()
    try:
        yield transport
    finally:
        await transport.close()
        async with await connect_pika(url) as connection:
            await delete_topology(await connection.channel(), transport.topology)


def real_transport(namespace: str, url: str = RABBITMQ_URL) -> AsyncIterator[RabbitTransport]:
    return connected(RabbitTransport(url, Topology(namespace, SHOP_PARTICIPANTS), prefetch=10))


@pytest.fixture(
    params=[
        "rabbitmq",
        # With the other tests on the session's cluster (tests/conftest.py): on one worker.
        pytest.param("rabbitmq-cluster", marks=pytest.mark.xdist_group("heavy")),
        "memory",
    ]
)
def broker(request: pytest.FixtureRequest) -> str | None:
    """The URL of the broker the contract runs on: the shared node, or a 3-node cluster
    of the session's own (each queue held by all three); None: in memory."""
    if request.param == "rabbitmq-cluster":
        # Started here, outside the event loop: the nodes' own helpers block.
        return str(request.getfixturevalue("rabbit_cluster").url)
    return RABBITMQ_URL if request.param == "rabbitmq" else None


@pytest.fixture
async def transport(broker: str | None, namespace: str) -> AsyncIterator[Transport]:
    if broker is not None:
        async for real in real_transport(namespace, broker):
            yield real
        return
    memory = InMemoryTransport(Topology(namespace, SHOP_PARTICIPANTS), prefetch=10)
    await memory.connect()
    yield memory
    await memory.close()


async def parked(transport: Transport) -> list[tuple[bytes, dict[str, Any]]]:
    """The dead letters, whatever the transport."""
    if isinstance(transport, InMemoryTransport):
        return transport.parked()
    assert isinstance(transport, RabbitTransport)
    async with await connect_pika(",".join(transport.nodes)) as connection:
        channel = await connection.channel()
        queue = await channel.get_queue(transport.topology.dead_letter_queue, ensure=False)
        found = []
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            found.append((message.body, dict(message.headers or {})))
    return found  # unacked: parked still


async def test_a_published_command_is_consumed_and_acked(transport: Transport) -> None:
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
    assert await transport.depth(transport.topology.participant_queue("stock")) == 0


async def test_it_counts_the_consumers_of_a_queue(transport: Transport) -> None:
    queue = transport.topology.participant_queue("stock")
    assert await transport.consumers(transport.topology.participant_queue("nobody")) == 0
    assert await transport.consumers(queue) == 0  # declared, read by nothing yet

    async def handler(delivery: Delivery) -> Outcome:
        return ACK

    await transport.consume(queue, handler)
    assert await transport.consumers(queue) == 1
    await transport.stop_consuming()
    assert await transport.consumers(queue) == 0
    # The transport still works after asking of a queue that does not exist.
    assert await transport.depth(queue) == 0


async def test_a_participant_of_ones_own_gets_a_queue_that_keeps_its_commands(
    transport: Transport,
) -> None:
    with pytest.raises(PUBLISH_ERRORS):  # no queue takes it yet: an error, not a loss
        await transport.publish_command("courier", envelope(1))
    await transport.declare_participants(["courier", "stock"])
    await transport.declare_participants(["courier"])  # again: nothing changes
    assert transport.topology.participants == ("stock", "payment", "order", "courier")
    await transport.publish_command("courier", envelope(2))
    queue = transport.topology.participant_queue("courier")
    await eventually(lambda: transport.depth(queue), until=lambda n: n == 1)
    if isinstance(transport, RabbitTransport):  # the queue is the documented one
        await _check_arguments(queue, transport)


async def _check_arguments(queue: str, transport: RabbitTransport) -> None:
    async with await connect_pika(",".join(transport.nodes)) as connection:
        channel = await connection.channel()
        # The same declaration as docs/wire-protocol.md gives a participant in another language:
        # accepted only if the arguments are exactly the queue's (on a cluster, with the
        # group size the engine made it with).
        sized = {} if transport.group_size is None else {GROUP_SIZE_ARGUMENT: 3}
        await channel.declare_queue(
            queue,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-dead-letter-exchange": transport.topology.dead_letter_exchange,
                "x-delivery-limit": 11,
                **sized,
            },
        )


async def test_replies_go_to_the_orchestrator(transport: Transport) -> None:
    await transport.publish_reply(envelope(7))
    queue = transport.topology.orchestrator_queue
    await eventually(lambda: transport.depth(queue), until=lambda n: n == 1)
    assert await transport.depth(transport.topology.participant_queue("stock")) == 0


async def test_a_failing_handler_gets_the_message_again(transport: Transport) -> None:
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
    assert deliveries[1].redelivered and deliveries[1].delivery_count == 1


@pytest.mark.parametrize(
    "outage",
    [
        ReadOnlyError("READONLY You can't write against a read only replica."),
        OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'."),
        TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot"),
        MasterDownError("MASTERDOWN Link with MASTER is down"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_a_redis_that_cannot_serve_for_now_is_waited_out_with_the_message_in_hand(
    transport: Transport, outage: Exception
) -> None:
    # Redis answers these while it fails over, fills up or reshards: the message is not
    # at fault, so it is neither given back (nor counted toward the dead letters) nor
    # answered as a participant's own error.
    deliveries: list[Delivery] = []

    async def handler(delivery: Delivery) -> Outcome:
        deliveries.append(delivery)
        if len(deliveries) == 1:
            raise outage
        return ACK

    await transport.publish_reply(envelope(3))
    await transport.consume(transport.topology.orchestrator_queue, handler)
    await eventually(lambda: asyncio.sleep(0, len(deliveries)), until=lambda n: n >= 2)
    assert not deliveries[1].redelivered and deliveries[1].delivery_count == 0


async def test_a_dead_lettered_message_keeps_its_body_and_reason(transport: Transport) -> None:
    async def handler(delivery: Delivery) -> Outcome:
        return DeadLetter("unknown saga s1")

    await transport.publish_reply(envelope(4))
    await transport.consume(transport.topology.orchestrator_queue, handler)
    ((body, headers),) = await eventually(lambda: parked(transport), what="a dead letter")
    assert Envelope.from_bytes(body).message_id == "m4"
    assert headers[DEAD_REASON_HEADER] == "unknown saga s1"
    assert headers[DEAD_QUEUE_HEADER] == transport.topology.orchestrator_queue
    assert headers[DEAD_ID_HEADER]  # the id it keeps for life
    assert await transport.depth(transport.topology.orchestrator_queue) == 0


async def test_a_message_that_always_fails_ends_in_the_dead_letters(transport: Transport) -> None:
    attempts = 0

    async def handler(delivery: Delivery) -> Outcome:
        nonlocal attempts
        attempts += 1
        # redis-py's repr of its errors leaves out what the server said.
        raise ResponseError("hash value is not an integer script: 1f2e, on @user_script:16.")

    await transport.publish_command("order", envelope(5))
    await transport.consume(transport.topology.participant_queue("order"), handler)
    ((body, headers),) = await eventually(
        lambda: parked(transport), within=30, what="the poison dead-lettered"
    )
    assert Envelope.from_bytes(body).message_id == "m5"
    assert attempts == DELIVERY_LIMIT + 1
    reason = headers[DEAD_REASON_HEADER]
    assert reason == (
        f"handler failed {DELIVERY_LIMIT + 1} times: ResponseError: hash value is not an "
        "integer script: 1f2e, on @user_script:16."
    )


async def test_a_stopped_consumer_takes_nothing_more(transport: Transport) -> None:
    seen: list[Delivery] = []

    async def handler(delivery: Delivery) -> Outcome:
        seen.append(delivery)
        return ACK

    queue = transport.topology.participant_queue("payment")
    await transport.consume(queue, handler)
    await transport.stop_consuming()
    await transport.publish_command("payment", envelope(8))
    await eventually(lambda: transport.depth(queue), until=lambda n: n == 1)
    assert seen == []


# --- RabbitMQ only: what a broker does that a process cannot ------------------------


@pytest.fixture
async def rabbit(namespace: str) -> AsyncIterator[RabbitTransport]:
    async for real in real_transport(namespace):
        yield real


async def test_a_message_held_by_a_dead_consumer_is_redelivered(
    rabbit: RabbitTransport, namespace: str
) -> None:
    first = RabbitTransport(RABBITMQ_URL, Topology(namespace, SHOP_PARTICIPANTS))
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

    got: list[Delivery] = []

    async def handler(delivery: Delivery) -> Outcome:
        got.append(delivery)
        return ACK

    await rabbit.consume(rabbit.topology.participant_queue("payment"), handler)
    await eventually(lambda: asyncio.sleep(0, got), what="the redelivery")
    assert Envelope.from_bytes(got[0].body).message_id == "m3"
    assert got[0].redelivered


async def test_namespaces_do_not_see_each_other(rabbit: RabbitTransport) -> None:
    other = Topology(rabbit.topology.namespace + "x", SHOP_PARTICIPANTS)
    neighbour = RabbitTransport(RABBITMQ_URL, other)
    await neighbour.connect()
    try:
        await neighbour.publish_command("stock", envelope(6))
        assert await rabbit.depth(rabbit.topology.participant_queue("stock")) == 0
        assert await neighbour.depth(other.participant_queue("stock")) == 1
    finally:
        connection = await rabbitmq_or_skip()
        async with connection:
            await delete_topology(await connection.channel(), other)
        await neighbour.close()


async def test_acks_go_together_but_never_for_a_delivery_still_in_hand(
    rabbit: RabbitTransport, namespace: str
) -> None:
    first = RabbitTransport(RABBITMQ_URL, Topology(namespace, SHOP_PARTICIPANTS), prefetch=10)
    await first.connect()
    handled: list[str] = []

    async def first_stuck(delivery: Delivery) -> Outcome:
        message_id = Envelope.from_bytes(delivery.body).message_id
        if message_id == "m1":
            await asyncio.sleep(3600)  # still in hand when the process dies
        handled.append(message_id)
        return ACK

    for n in range(1, 7):
        await first.publish_command("payment", envelope(n))
    await first.consume(first.topology.participant_queue("payment"), first_stuck)
    await eventually(lambda: asyncio.sleep(0, len(handled)), until=lambda n: n == 5)
    await asyncio.sleep(0.5)  # acks wait a few milliseconds for their neighbours
    await first.close()  # dies holding m1

    again: list[str] = []

    async def handler(delivery: Delivery) -> Outcome:
        again.append(Envelope.from_bytes(delivery.body).message_id)
        return ACK

    await rabbit.consume(rabbit.topology.participant_queue("payment"), handler)
    await eventually(lambda: asyncio.sleep(0, again), what="the redelivery of m1")
    await asyncio.sleep(0.5)
    # The five handled behind m1 were acked (alone, since m1 held the run back).
    assert again == ["m1"]

    # Now every one finishes: one ack covers them all, and nothing comes back.
    await rabbit.stop_consuming()
    for n in range(7, 17):
        await rabbit.publish_command("payment", envelope(n))
    await rabbit.consume(rabbit.topology.participant_queue("payment"), handler)
    await eventually(lambda: asyncio.sleep(0, len(again)), until=lambda n: n == 11)
    await rabbit.stop_consuming()
    await rabbit.close()
    replacement = RabbitTransport(RABBITMQ_URL, Topology(namespace, SHOP_PARTICIPANTS))
    await replacement.connect()
    try:
        await asyncio.sleep(0.2)
        assert await replacement.depth(replacement.topology.participant_queue("payment")) == 0
    finally:
        await replacement.close()


# --- losses the transport recovers from by making its connection again --------------


async def consumed_ids(transport: RabbitTransport, participant: Participant) -> list[str]:
    """Start consuming a participant's queue; the ids of what arrives."""
    seen: list[str] = []

    async def handler(delivery: Delivery) -> Outcome:
        seen.append(Envelope.from_bytes(delivery.body).message_id)
        return ACK

    await transport.consume(transport.topology.participant_queue(participant), handler)
    return seen


async def reconnected(transport: RabbitTransport, lost: object) -> None:
    """Wait until the transport runs on a new connection."""
    await eventually(
        lambda: asyncio.sleep(0, transport.connected and transport._connection is not lost),
        what="the reconnection",
    )


async def arrived(seen: list[str], *ids: str) -> None:
    await eventually(lambda: asyncio.sleep(0, set(seen)), until=lambda s: s == set(ids))


UNREACHABLE = "amqp://guest:guest@127.0.0.1:1/"


@pytest.fixture
async def quick(namespace: str) -> AsyncIterator[RabbitTransport]:
    """A RabbitMQ transport with a name of its own, that reconnects within 0.1 s."""
    async for transport in connected(
        RabbitTransport(
            RABBITMQ_URL,
            Topology(namespace, SHOP_PARTICIPANTS),
            reconnect=Backoff(backoff=0.1, max_backoff=0.1),
            name=f"test {namespace}",
        )
    ):
        yield transport


async def cut(transport: RabbitTransport) -> None:
    """The broker closes the transport's connection."""
    name = f"test {transport.topology.namespace} ({transport.topology.namespace})"
    assert await asyncio.to_thread(close_connections_named, name) == 1


async def test_a_connection_the_broker_closes_is_made_again_with_its_consumers(
    quick: RabbitTransport,
) -> None:
    seen = await consumed_ids(quick, "stock")
    await quick.publish_command("stock", envelope(1))
    await arrived(seen, "m1")
    lost = quick._connection
    await cut(quick)
    await reconnected(quick, lost)
    await quick.publish_command("stock", envelope(2))
    await arrived(seen, "m1", "m2")  # m1 may come twice: its ack may have been lost


async def test_a_delivery_in_hand_when_the_connection_goes_comes_again(
    quick: RabbitTransport,
) -> None:
    started: list[tuple[str, bool]] = []
    finished: list[str] = []

    async def slow(delivery: Delivery) -> Outcome:
        message_id = Envelope.from_bytes(delivery.body).message_id
        started.append((message_id, delivery.redelivered))
        if len(started) == 1:
            await asyncio.sleep(3600)  # still in hand...
        finished.append(message_id)
        return ACK

    await quick.consume(quick.topology.participant_queue("stock"), slow)
    await quick.publish_command("stock", envelope(1))
    await eventually(lambda: asyncio.sleep(0, started), what="m1 in hand")
    lost = quick._connection
    await cut(quick)  # ...when the broker closes the connection
    await reconnected(quick, lost)
    # The handler in hand went with its connection (aiormq cancels it); the broker gave
    # m1 back and delivers it again on the new connection, where it is handled and acked.
    await eventually(lambda: asyncio.sleep(0, finished), what="m1 handled again")
    assert started == [("m1", False), ("m1", True)]
    assert finished == ["m1"]
    await asyncio.sleep(0.2)  # acks wait a few milliseconds for their neighbours
    await quick.close()
    again = RabbitTransport(RABBITMQ_URL, quick.topology)
    await again.connect()
    try:
        assert await again.depth(again.topology.participant_queue("stock")) == 0
    finally:
        await again.close()


async def test_a_publish_while_disconnected_fails_at_once_as_unavailable(
    quick: RabbitTransport,
) -> None:
    quick._urls = (UNREACHABLE,)  # its tries to reconnect fail from now on
    await cut(quick)
    await eventually(lambda: asyncio.sleep(0, not quick.connected))
    with pytest.raises(TransportUnavailable):
        await quick.publish_command("stock", envelope(1))


async def test_a_consumer_started_while_disconnected_starts_with_the_connection(
    quick: RabbitTransport,
) -> None:
    lost = quick._connection
    quick._urls = (UNREACHABLE,)
    await cut(quick)
    await eventually(lambda: asyncio.sleep(0, not quick.connected))
    seen = await consumed_ids(quick, "payment")  # no error: it waits for the connection
    quick._urls = (RABBITMQ_URL,)  # the broker is back
    await reconnected(quick, lost)
    await quick.publish_command("payment", envelope(4))
    await arrived(seen, "m4")


async def test_a_channel_the_broker_closes_is_opened_again(quick: RabbitTransport) -> None:
    # Publishing to an exchange that does not exist makes the broker close the channel.
    lost = quick._connection
    # The client's error reaches the caller as the port's own, the client's its cause.
    with pytest.raises(TransportUnavailable) as closed:
        await quick._publish("no-such-exchange", "stock", b"{}", envelope(1), queue="stock")
    assert isinstance(closed.value.__cause__, aiormq.exceptions.ChannelNotFoundEntity)
    await reconnected(quick, lost)
    seen = await consumed_ids(quick, "payment")
    await quick.publish_command("payment", envelope(2))
    await arrived(seen, "m2")


async def test_a_consumer_whose_queue_was_deleted_consumes_it_again(
    quick: RabbitTransport,
) -> None:
    seen = await consumed_ids(quick, "order")
    lost = quick._connection
    connection = await rabbitmq_or_skip()
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(quick.topology.participant_queue("order"))
    # The broker cancels the consumer; the transport declares its queues and consumes again.
    await reconnected(quick, lost)
    await quick.publish_command("order", envelope(3))
    await arrived(seen, "m3")
