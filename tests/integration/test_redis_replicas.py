"""SAGA_REDIS_WAIT_REPLICAS on a Redis primary and replica of the test's own: an append
answers once the replica has it, and while the replica lags nothing it decided is
published (the input waits, and goes through once the replica is back)."""

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import aio_pika
import pytest
from redis.asyncio import Redis

from saga.clock import utc_now
from saga.connections import warn_if_replicas_short
from saga.orchestrator import Orchestrator, SagaStarter
from saga.outbox import Dispatcher, OutboxRelay
from saga.rabbit import RabbitTransport
from saga.scripts import ReplicasBehind
from saga.store import RedisSagaStore
from tests.integration.test_orchestrator import builtins, reply_to, take
from tests.nodes import RedisClusterNodes, RedisServer, cluster_client
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
    _, replica = pair
    replica.pause()
    try:
        with pytest.raises(ReplicasBehind, match="0 of 1 Redis replicas"):
            await Orchestrator(store, dispatcher, builtins(store)).handle(reply_to(reserve))
        # Decided and on the primary, but not published: the reply is not acked either
        # (the transport runs the handler again, as for any outage).
        assert [c.envelope.type for c in await store.outbox(reserve.saga_id)] == ["ChargePayment"]
        assert await take(amqp, transport.topology, "payment") == []
        # Delivered again to another orchestrator (connections of its own, none of which
        # wrote the decision) while the replica still lags: a duplicate, still unpublished.
        async with Redis.from_url(pair[0].url, decode_responses=True) as other:
            again = waiting_store(other, namespace, timeout_ms=300)
            with pytest.raises(ReplicasBehind):
                await Orchestrator(again, Dispatcher(again, transport), builtins(again)).handle(
                    reply_to(reserve)
                )
        assert await take(amqp, transport.topology, "payment") == []
        # Nor does the outbox relay publish it, however old it is.
        relay = OutboxRelay(
            store, dispatcher, interval=1, grace=0, clock=lambda: utc_now() + timedelta(seconds=60)
        )
        with pytest.raises(ReplicasBehind):
            await relay.run_once()
        assert await take(amqp, transport.topology, "payment") == []
    finally:
        replica.resume()
    # Once the replica is back, the same reply goes through and the charge is sent once.
    await Orchestrator(store, dispatcher, builtins(store)).handle(reply_to(reserve))
    await dispatcher.settle()
    (charge,) = await take(amqp, transport.topology, "payment")
    assert charge.type == "ChargePayment"


async def test_a_start_asked_again_while_the_replica_lags_is_not_answered_as_done(
    pair: tuple[RedisServer, RedisServer], namespace: str
) -> None:
    _, replica = pair
    replica.pause()
    try:
        for _ in range(2):  # the client's retry finds the start made: it still waits
            async with Redis.from_url(pair[0].url, decode_responses=True) as fresh:
                store = waiting_store(fresh, namespace, timeout_ms=300)
                with pytest.raises(ReplicasBehind):
                    await SagaStarter(store, _Nowhere(), builtin=is_builtin).start(
                        ORDER_SAGA,
                        customer="ann@example.com",
                        saga_input=order_input(),
                        saga_id="started-once",
                    )
    finally:
        replica.resume()


class _Nowhere(Dispatcher):
    """A dispatcher with nowhere to publish: the start's command stays in its outbox."""

    def __init__(self) -> None:
        pass

    async def dispatch(self, *args: object, **kwargs: object) -> None:
        raise ConnectionError("not publishing in this test")


async def test_a_start_up_warns_of_primaries_with_fewer_replicas_than_asked(
    clients: tuple[Redis, Redis], pair: tuple[RedisServer, RedisServer]
) -> None:
    primary, _ = clients
    assert await warn_if_replicas_short(primary, 0) == {}  # nothing asked, nothing checked
    assert await warn_if_replicas_short(primary, 1) == {}
    assert await warn_if_replicas_short(primary, 2) == {f"127.0.0.1:{pair[0].port}": 1}


async def test_each_primary_of_a_cluster_is_counted(redis_cluster: RedisClusterNodes) -> None:
    cluster = cluster_client(redis_cluster)
    try:
        assert await warn_if_replicas_short(cluster, 1) == {}
        short = await warn_if_replicas_short(cluster, 2)
        assert sorted(short) == sorted(f"127.0.0.1:{n.port}" for n in redis_cluster.primary_nodes())
        assert set(short.values()) == {1}
    finally:
        await cluster.aclose()
