"""SAGA_REDIS_WAIT_REPLICAS on a Redis primary and replica of the test's own: an append
answers once the replica has it, and while the replica lags nothing it decided is
published (the input waits, and goes through once the replica is back)."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import pytest
from redis.asyncio import Redis

from saga.orchestrator import Orchestrator, SagaStarter
from saga.outbox import Dispatcher
from saga.rabbit import RabbitTransport
from saga.scripts import ReplicasBehind
from saga.store import RedisSagaStore
from tests.integration.test_orchestrator import builtins, reply_to, take
from tests.nodes import RedisServer
from tests.shop_saga import ORDER_SAGA, is_builtin
from tests.unit.sagas import order_input
from tests.waiting import eventually


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, RedisServer]]:
    root = Path(tmp_path_factory.mktemp("replicas"))
    primary = RedisServer(root / "primary")
    replica = RedisServer(root / "replica", replica_of=primary)
    try:
        primary.start()
        replica.start()
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()


@pytest.fixture
async def clients(pair: tuple[RedisServer, RedisServer]) -> AsyncIterator[tuple[Redis, Redis]]:
    primary, replica = (Redis.from_url(s.url, decode_responses=True) for s in pair)
    await eventually(
        lambda: replica.info("replication"),
        until=lambda info: info.get("master_link_status") == "up",
        what="the replica in sync",
    )
    yield primary, replica
    await primary.aclose()
    await replica.aclose()


def waiting_store(primary: Redis, namespace: str, timeout_ms: int = 2000) -> RedisSagaStore:
    return RedisSagaStore(primary, namespace, wait_replicas=1, wait_timeout_ms=timeout_ms)


async def test_a_start_answers_once_the_replica_has_it(
    clients: tuple[Redis, Redis], namespace: str
) -> None:
    primary, replica = clients
    store = waiting_store(primary, namespace)
    state = await SagaStarter(store, _Nowhere(), builtin=is_builtin).start(
        ORDER_SAGA, customer="ann@example.com", saga_input=order_input()
    )
    # Answered: so the replica has it already, not some time later.
    assert await replica.exists(store.keys(state.saga_id).state) == 1


async def test_while_the_replica_lags_nothing_decided_is_published_and_the_input_waits(
    pair: tuple[RedisServer, RedisServer],
    clients: tuple[Redis, Redis],
    namespace: str,
    transport: RabbitTransport,
    amqp: aio_pika.abc.AbstractConnection,
) -> None:
    primary, _ = clients
    store = waiting_store(primary, namespace, timeout_ms=300)
    dispatcher = Dispatcher(store, transport)
    await SagaStarter(store, dispatcher, builtin=is_builtin).start(
        ORDER_SAGA, customer="ann@example.com", saga_input=order_input()
    )
    await dispatcher.settle()
    (reserve,) = await take(amqp, transport.topology, "stock")
    orchestrator = Orchestrator(store, dispatcher, builtins(store))
    _, replica = pair
    replica.pause()
    try:
        with pytest.raises(ReplicasBehind, match="0 of 1 Redis replicas"):
            await orchestrator.handle(reply_to(reserve))
        # Decided and on the primary, but not published: the reply is not acked either
        # (the transport runs the handler again, as for any outage).
        assert [c.envelope.type for c in await store.outbox(reserve.saga_id)] == ["ChargePayment"]
        assert await take(amqp, transport.topology, "payment") == []
        # Delivered again while the replica still lags: a duplicate, still not published.
        with pytest.raises(ReplicasBehind):
            await orchestrator.handle(reply_to(reserve))
        assert await take(amqp, transport.topology, "payment") == []
    finally:
        replica.resume()
    # Once the replica is back, the same reply goes through and the charge is sent once.
    await orchestrator.handle(reply_to(reserve))
    await dispatcher.settle()
    (charge,) = await take(amqp, transport.topology, "payment")
    assert charge.type == "ChargePayment"


class _Nowhere(Dispatcher):
    """A dispatcher with nowhere to publish: the start's command stays in its outbox."""

    def __init__(self) -> None:
        pass

    async def dispatch(self, *args: object, **kwargs: object) -> None:
        raise ConnectionError("not publishing in this test")
