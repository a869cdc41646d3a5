"""The definition registry on the real Redis: versions that never change, latest for new
sagas, and no delete while a saga may still need the version."""

from typing import Any

import pytest

from saga.connections import AnyRedis
from saga.core.decide import CancelSaga, ReplyReceived
from saga.core.document import DefinitionError, DefinitionSpec
from saga.definitions import read_text
from saga.keyspace import keyspace_of
from saga.orchestrator import Orchestrator, SagaStarter
from saga.outbox import Dispatcher
from saga.rabbit import RabbitTransport
from saga.registry import (
    DefinitionConflict,
    DefinitionInUse,
    DefinitionRegistry,
    participants_key,
)
from saga.store import NoSuchDefinition, RedisSagaStore, definition_field
from services.messages import CATALOGUE
from tests.servers import drop_namespace, redis_or_skip
from tests.shop_saga import BUILTINS
from tests.unit.sagas import order_input

ORDER_SPEC = BUILTINS["order"][1]


def order_v(version: int, **changes: Any) -> DefinitionSpec:
    """The order saga's document as another version, with changes."""
    return ORDER_SPEC.model_copy(update={"version": version, **changes})


def ping(version: int = 1, command: str = "Ping") -> DefinitionSpec:
    return read_text(
        f"""
name: ping
version: {version}
steps:
  - name: ping
    participant: pinger
    action: {{command: {command}, reply: Pong}}
    compensation: {{command: Unping, reply: Unponged}}
"""
    )


# Each test that takes `redis` runs on one Redis and on a Redis Cluster: the registry's
# contract is the same on both.
pytestmark = pytest.mark.either_redis


@pytest.fixture
def registry(redis: AnyRedis, namespace: str) -> DefinitionRegistry:
    return DefinitionRegistry(redis, namespace, builtins=BUILTINS, catalogue=CATALOGUE)


async def test_a_version_is_applied_once_and_never_changes(registry: DefinitionRegistry) -> None:
    assert await registry.apply(ping()) == "created"
    assert await registry.apply(ping()) == "unchanged"
    with pytest.raises(DefinitionConflict, match="apply the change as a new version"):
        await registry.apply(ping(command="Knock"))
    stored = await registry.get("ping", 1)
    assert stored is not None and stored.step("ping").success == "Pong"


# As an engine that wrote durations in ISO 8601 stored `ping` version 1 and an HTTP
# participant; whatever a document shows, what is stored (and compared) stays this form.
STORED_PING = (
    '{"description":null,"input":{"type":"object"},"name":"ping","participants":{},'
    '"roles":["admin"],"steps":[{"action":{"command":"Ping","input":{},"reply":"Pong"},'
    '"compensation":{"command":"Unping","input":{},"reply":"Unponged"},'
    '"compensation_retry":{"backoff":"PT0.5S","jitter":0.5,"max_attempts":5,'
    '"max_backoff":"PT30S"},"name":"ping","participant":"pinger","retry":{"backoff":'
    '"PT0.5S","jitter":0.5,"max_attempts":3,"max_backoff":"PT30S"},"timeout":"PT10S",'
    '"when":null}],"summary":{},"version":1}'
)
STORED_COURIER = (
    '{"breaker":{"reset_after":"PT10S","threshold":5},"timeout":"PT2S",'
    '"url":"http://127.0.0.1:1/courier"}'
)


async def test_what_an_earlier_engine_stored_is_the_same_document_still(
    registry: DefinitionRegistry, redis: AnyRedis, namespace: str
) -> None:
    shared = keyspace_of(redis, namespace).shared
    await redis.hset(shared("definitions"), definition_field("ping", 1), STORED_PING)
    await redis.hset(shared("http-participants"), "courier", STORED_COURIER)
    await redis.sadd(participants_key(redis, namespace), "courier")
    assert await registry.apply(ping()) == "unchanged"
    courier = read_text(
        """
name: shipping
version: 1
participants:
  courier: {http: {url: "http://127.0.0.1:1/courier", timeout: 2s}}
steps:
  - name: ship
    participant: courier
    action: {command: Ship}
    compensation: {command: Unship}
"""
    )
    assert await registry.apply(courier) == "created"  # reaches courier the same way


async def test_a_built_in_version_cannot_be_replaced(registry: DefinitionRegistry) -> None:
    assert await registry.apply(ORDER_SPEC) == "unchanged"
    with pytest.raises(DefinitionConflict, match="built in"):
        await registry.apply(ORDER_SPEC.model_copy(update={"description": "changed"}))
    with pytest.raises(DefinitionConflict, match="built in"):
        await registry.delete("order", 1)


async def test_new_sagas_start_on_the_latest_version(registry: DefinitionRegistry) -> None:
    assert (await registry.latest("order")).version == 1
    await registry.apply(order_v(3))
    await registry.apply(order_v(2))
    assert (await registry.latest("order")).version == 3
    entries = {e.name: e for e in await registry.entries()}
    assert entries["order"].versions == (1, 2, 3) and entries["order"].builtin == (1,)
    with pytest.raises(NoSuchDefinition, match="no saga definition nothing"):
        await registry.latest("nothing")
    assert await registry.get("order", 9) is None


async def test_a_version_a_saga_may_still_need_cannot_be_deleted(
    registry: DefinitionRegistry, redis: AnyRedis, namespace: str, transport: RabbitTransport
) -> None:
    store = RedisSagaStore(redis, namespace)
    dispatcher = Dispatcher(store, transport)
    starter = SagaStarter(store, dispatcher, builtin=registry.is_builtin)
    orchestrator = Orchestrator(store, dispatcher, registry)
    await registry.apply(order_v(2))
    state = await starter.start(
        await registry.latest("order"), customer="ann@example.com", saga_input=order_input()
    )
    assert state.definition_version == 2
    with pytest.raises(DefinitionInUse, match="used by 1 saga"):
        await registry.delete("order", 2)
    # Cancelled and compensated: nothing needs version 2 any more.
    applied = await orchestrator.apply(state.saga_id, CancelSaga(by="ops"), applied_id="c1")
    (release,) = applied.commands
    await orchestrator.apply(
        state.saga_id,
        ReplyReceived("r1", release.envelope.message_id, "StockReleased", {"released": True}),
        applied_id="r1",
    )
    assert (await store.load(state.saga_id)).status == "compensated"  # type: ignore[union-attr]
    await registry.delete("order", 2)
    fresh = DefinitionRegistry(redis, namespace, builtins=BUILTINS, catalogue=CATALOGUE)
    for reader in (registry, fresh):
        assert await reader.document("order", 2) is None  # gone from what can be applied
        assert (await reader.latest("order")).version == 1  # and from what starts
        # A saga that ended on it still reads it: its summary, a late reply to record.
        kept = await reader.get("order", 2)
        assert kept is not None and kept.version == 2
    with pytest.raises(NoSuchDefinition):
        await registry.delete("order", 2)
    await dispatcher.settle()


async def test_no_saga_starts_on_a_version_deleted_meanwhile(
    registry: DefinitionRegistry, redis: AnyRedis, namespace: str, transport: RabbitTransport
) -> None:
    store = RedisSagaStore(redis, namespace)
    starter = SagaStarter(store, Dispatcher(store, transport), builtin=registry.is_builtin)
    await registry.apply(ping())
    definition = await registry.latest("ping")  # read, then deleted before the start
    await DefinitionRegistry(redis, namespace, builtins=BUILTINS, catalogue=CATALOGUE).delete(
        "ping", 1
    )
    with pytest.raises(NoSuchDefinition, match="ping version 1"):
        await starter.start(definition, customer="ann@example.com", saga_input={})
    assert await store.ids(limit=10) == []


async def test_on_one_redis_no_saga_starts_on_a_version_an_earlier_engine_deleted(
    namespace: str, transport: RabbitTransport
) -> None:
    # (A cluster's namespaces never ran an engine without the buckets' fence.)
    redis = await redis_or_skip()
    try:
        registry = DefinitionRegistry(redis, namespace, builtins=BUILTINS, catalogue=CATALOGUE)
        store = RedisSagaStore(redis, namespace)
        starter = SagaStarter(store, Dispatcher(store, transport), builtin=registry.is_builtin)
        await registry.apply(ping())
        definition = await registry.latest("ping")
        # Deleted as an earlier engine did: the document only, no bucket closed.
        await redis.hdel(f"{namespace}:definitions", "ping:1")
        with pytest.raises(NoSuchDefinition, match="ping version 1"):
            await starter.start(definition, customer="ann@example.com", saga_input={})
    finally:
        await drop_namespace(redis, namespace)
        await redis.aclose()


def with_http(name: str, participant: str, url: str | None) -> DefinitionSpec:
    """A one-step definition on `participant`, over HTTP at `url` (or its queue)."""
    reach = f"participants: {{{participant}: {{http: {{url: '{url}'}}}}}}" if url else ""
    reply = "" if url else ", reply: Done"
    return read_text(
        f"""
name: {name}
version: 1
{reach}
steps:
  - name: call
    participant: {participant}
    action: {{command: Call{reply}}}
"""
    )


async def test_a_participant_is_reached_one_way_in_a_namespace(
    registry: DefinitionRegistry,
) -> None:
    await registry.apply(with_http("a", "quotes", "http://127.0.0.1:1/q"))
    await registry.apply(with_http("b", "quotes", "http://127.0.0.1:1/q"))  # the same way
    with pytest.raises(DefinitionConflict, match="participant quotes is defined otherwise"):
        await registry.apply(with_http("c", "quotes", "http://127.0.0.1:2/q"))
    with pytest.raises(DefinitionConflict, match="an HTTP participant"):
        await registry.apply(with_http("d", "quotes", None))
    await registry.apply(with_http("e", "couriers", None))
    with pytest.raises(DefinitionConflict, match="a queue participant"):
        await registry.apply(with_http("f", "couriers", "http://127.0.0.1:1/c"))
    with pytest.raises(DefinitionError, match="a participant with registered contracts"):
        await registry.apply(with_http("g", "stock", "http://127.0.0.1:1/s"))


async def test_a_deleted_version_never_comes_back(registry: DefinitionRegistry) -> None:
    await registry.apply(ping())
    await registry.delete("ping", 1)
    with pytest.raises(DefinitionConflict, match="was deleted"):
        await registry.apply(ping(command="Knock"))
    assert await registry.apply(ping(version=2, command="Knock")) == "created"


async def _contents(redis: AnyRedis, namespace: str) -> dict[str, object]:
    """Every key of the namespace with its value."""
    found: dict[str, object] = {}
    async for key in redis.scan_iter(match=f"{namespace}:*"):
        kind = await redis.type(key)
        if kind == "hash":
            found[key] = await redis.hgetall(key)
        elif kind == "set":
            found[key] = await redis.smembers(key)
        elif kind == "zset":
            found[key] = await redis.zrange(key, 0, -1, withscores=True)
        else:
            found[key] = (kind, await redis.get(key) if kind == "string" else None)
    return found


async def test_a_dry_run_refuses_what_apply_refuses_and_registers_nothing(
    registry: DefinitionRegistry, redis: AnyRedis, namespace: str
) -> None:
    async def dry_run(spec: DefinitionSpec) -> str:
        before = await _contents(redis, namespace)
        try:
            return await registry.apply(spec, dry_run=True)
        finally:
            assert await _contents(redis, namespace) == before

    assert await dry_run(ping()) == "created"
    assert await registry.entry("ping") is None
    assert await registry.apply(ping()) == "created"
    assert await dry_run(ping()) == "unchanged"
    with pytest.raises(DefinitionConflict, match="apply the change as a new version"):
        await dry_run(ping(command="Knock"))
    await registry.apply(with_http("a", "quotes", "http://127.0.0.1:1/q"))
    with pytest.raises(DefinitionConflict, match="participant quotes is defined otherwise"):
        await dry_run(with_http("c", "quotes", "http://127.0.0.1:2/q"))
    with pytest.raises(DefinitionConflict, match="a queue participant"):
        await dry_run(with_http("f", "pinger", "http://127.0.0.1:1/p"))
    with pytest.raises(DefinitionConflict, match="built in"):
        await dry_run(ORDER_SPEC.model_copy(update={"description": "changed"}))
    with pytest.raises(DefinitionError):
        await dry_run(ping(version=2).model_copy(update={"steps": []}))
    await registry.delete("ping", 1)
    with pytest.raises(DefinitionConflict, match="was deleted"):
        await dry_run(ping())


async def test_one_delete_of_a_version_at_a_time(
    registry: DefinitionRegistry, redis: AnyRedis, namespace: str
) -> None:
    await registry.apply(ping())
    lock = keyspace_of(redis, namespace).shared(f"definition-delete:{definition_field('ping', 1)}")
    await redis.set(lock, "another-deleter", px=30_000)  # another delete is going through
    with pytest.raises(DefinitionInUse, match="being deleted already"):
        await registry.delete("ping", 1)
    assert await registry.document("ping", 1) is not None  # it did nothing
    await redis.delete(lock)
    await registry.delete("ping", 1)
    assert await redis.exists(lock) == 0  # released
