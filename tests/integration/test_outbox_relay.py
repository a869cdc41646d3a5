"""The outbox relay on real Redis and RabbitMQ: each command left in an outbox is
published once, whoever else publishes that outbox at the same moment."""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

import aio_pika
import pytest
from redis.asyncio import Redis

from contracts.topology import Participant, Topology
from saga.clock import utc_now
from saga.core.policy import Backoff
from saga.orchestrator import Orchestrator, SagaStarter
from saga.outbox import Dispatcher, OutboxRelay
from saga.rabbit import RabbitTransport
from saga.store import RedisSagaStore
from tests.integration.test_orchestrator import (
    Crash,
    CrashingDispatcher,
    builtins,
    orchestrator,
    reply_to,
    started,
    take,
)
from tests.integration.test_transport_contract import UNREACHABLE, cut, reconnected
from tests.servers import RABBITMQ_URL, SHOP_PARTICIPANTS
from tests.shop_saga import ORDER_SAGA, is_builtin
from tests.unit.sagas import order_input
from tests.waiting import eventually

GRACE = 5.0


@pytest.fixture
def store(redis: Redis, namespace: str) -> RedisSagaStore:
    return RedisSagaStore(redis, namespace)


@pytest.fixture
async def quick(
    amqp: aio_pika.abc.AbstractConnection, namespace: str
) -> AsyncIterator[RabbitTransport]:
    """A RabbitMQ transport the broker can cut by name, that reconnects within 0.1 s
    (the `amqp` fixture removes the topology after)."""
    transport = RabbitTransport(
        RABBITMQ_URL,
        Topology(namespace, SHOP_PARTICIPANTS),
        reconnect=Backoff(backoff=0.1, max_backoff=0.1),
        name=f"test {namespace}",
    )
    await transport.connect()
    yield transport
    await transport.close()


def relay(
    store: RedisSagaStore, dispatcher: Dispatcher, *, ahead: float, grace: float = GRACE
) -> OutboxRelay:
    """A relay whose clock runs `ahead` seconds in front (past the grace at 2 * GRACE)."""
    return OutboxRelay(
        store,
        dispatcher,
        interval=0.05,
        grace=grace,
        clock=lambda: utc_now() + timedelta(seconds=ahead),
    )


async def publications(
    amqp: aio_pika.abc.AbstractConnection, topology: Topology, participant: Participant
) -> Counter[str]:
    """How many times each command's message_id reached the participant's queue."""
    return Counter(c.message_id for c in await take(amqp, topology, participant))


async def left_in_outboxes(
    store: RedisSagaStore, transport: RabbitTransport, sagas: int
) -> list[str]:
    """Start `sagas` sagas, oldest first, whose process dies after storing each, before
    publishing; their ids."""
    crashing = SagaStarter(store, CrashingDispatcher(store, transport), builtin=is_builtin)
    ids = [f"left-{n}" for n in range(sagas)]
    for saga_id in ids:
        with pytest.raises(Crash):
            await crashing.start(
                ORDER_SAGA, customer="ann@example.com", saga_input=order_input(), saga_id=saga_id
            )
    return ids


# With no grace at all, every round claims every outbox again: what this process has
# under way is still published once.
@pytest.mark.parametrize("grace", [GRACE, 0.0])
async def test_commands_left_while_the_broker_was_away_are_relayed_once_each(
    store: RedisSagaStore,
    quick: RabbitTransport,
    amqp: aio_pika.abc.AbstractConnection,
    grace: float,
) -> None:
    dispatcher = Dispatcher(store, quick)
    starter = SagaStarter(store, dispatcher, builtin=is_builtin)
    lost = quick._connection
    quick._urls = (UNREACHABLE,)  # its tries to reconnect fail until the broker is "back"
    await cut(quick)
    await eventually(lambda: asyncio.sleep(0, not quick.connected), what="the cut")
    for _ in range(20):  # each first command fails to publish and stays in its outbox
        await starter.start(ORDER_SAGA, customer="ann@example.com", saga_input=order_input())
    assert await store.outbox_pending() == 20
    quick._urls = (RABBITMQ_URL,)
    await reconnected(quick, lost)

    stop = asyncio.Event()
    running = asyncio.create_task(relay(store, dispatcher, ahead=2 * GRACE, grace=grace).run(stop))
    await eventually(store.outbox_pending, until=lambda n: n == 0, what="every outbox cleared")
    stop.set()
    await running
    await dispatcher.settle()
    published = await publications(amqp, quick.topology, "stock")
    assert len(published) == 20
    assert max(published.values()) == 1, f"published more than once: {published}"


async def test_a_redelivered_reply_and_the_relay_flushing_one_outbox_publish_it_once(
    store: RedisSagaStore, transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection
) -> None:
    reserve = await started(store, transport, amqp)
    crashing = Orchestrator(store, CrashingDispatcher(store, transport), builtins(store))
    with pytest.raises(Crash):  # the reply's decision is stored, its command not published
        await crashing.handle(reply_to(reserve))
    dispatcher = Dispatcher(store, transport)
    live = orchestrator(store, transport, dispatcher)
    # The broker redelivers the reply just as the relay finds the outbox past its grace.
    await asyncio.gather(
        live.handle(reply_to(reserve)), relay(store, dispatcher, ahead=2 * GRACE).run_once()
    )
    await dispatcher.settle()
    published = await publications(amqp, transport.topology, "payment")
    assert list(published.values()) == [1], f"published more than once: {published}"
    assert await store.outbox(reserve.saga_id) == []
    assert await store.outbox_pending() == 0


async def test_the_relays_of_two_orchestrators_publish_each_left_command_once(
    redis: Redis, namespace: str, transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection
) -> None:
    await left_in_outboxes(RedisSagaStore(redis, namespace), transport, 10)
    stores = [RedisSagaStore(redis, namespace) for _ in range(2)]
    dispatchers = [Dispatcher(s, transport) for s in stores]
    relays = [relay(s, d, ahead=2 * GRACE) for s, d in zip(stores, dispatchers, strict=True)]
    counts = await asyncio.gather(*(r.run_once() for r in relays))
    await asyncio.gather(*(d.settle() for d in dispatchers))
    assert sum(counts) == 10
    published = await publications(amqp, transport.topology, "stock")
    assert len(published) == 10
    assert max(published.values()) == 1, f"published more than once: {published}"
    assert await stores[0].outbox_pending() == 0


async def test_a_relay_that_dies_before_publishing_leaves_the_command_to_the_next_after_the_grace(
    store: RedisSagaStore, transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection
) -> None:
    await left_in_outboxes(store, transport, 1)
    with pytest.raises(Crash):  # its relay took the outbox, then the process died
        await relay(store, CrashingDispatcher(store, transport), ahead=2 * GRACE).run_once()
    dispatcher = Dispatcher(store, transport)
    assert await relay(store, dispatcher, ahead=2 * GRACE).run_once() == 0  # not yet
    assert await relay(store, dispatcher, ahead=4 * GRACE).run_once() == 1  # after the grace
    await dispatcher.settle()
    assert list((await publications(amqp, transport.topology, "stock")).values()) == [1]
    assert await store.outbox_pending() == 0


async def test_a_command_the_broker_refuses_does_not_hold_up_the_outboxes_behind_it(
    redis: Redis,
    store: RedisSagaStore,
    transport: RabbitTransport,
    amqp: aio_pika.abc.AbstractConnection,
) -> None:
    refused, fine = await left_in_outboxes(store, transport, 2)
    saga = store.keys(refused).state
    outbox = await redis.hget(saga, "outbox")
    # A participant whose queue is gone: the broker returns the command.
    await redis.hset(saga, "outbox", outbox.replace('"stock"', '"gone"', 1))
    dispatcher = Dispatcher(store, transport)
    assert await relay(store, dispatcher, ahead=2 * GRACE).run_once() == 1
    await dispatcher.settle()
    [command] = await store.outbox(refused)
    assert command.participant == "gone"  # kept, for the relay's next try and the logs
    [published] = await take(amqp, transport.topology, "stock")
    assert published.saga_id == fine
