"""The orchestrator's shell on real Redis and RabbitMQ: crash windows, the relay, two replicas."""

import asyncio
from datetime import timedelta

import aio_pika
import pytest
from redis.asyncio import Redis

from contracts.envelope import CHECK_SAGA_PREFIX, Envelope
from contracts.topology import Participant, Topology
from saga.clock import utc_now
from saga.core.decide import CancelSaga
from saga.core.events import ReplyIgnored
from saga.orchestrator import Orchestrator, SagaStarter, StateCache
from saga.outbox import Dispatcher, OutboxRelay
from saga.rabbit import RabbitTransport
from saga.registry import DefinitionRegistry
from saga.store import RedisSagaStore
from saga.transport import ACK, PUBLISH_ERRORS, DeadLetter, Delivery
from services.messages import CATALOGUE
from tests.shop_saga import BUILTINS, ORDER_SAGA, is_builtin
from tests.unit.sagas import REPLY_TYPE, SUCCESS, order_input


class Crash(BaseException):
    """The process dies here (nothing catches a BaseException on the way)."""


class CrashingDispatcher(Dispatcher):
    async def dispatch(self, *args: object, **kwargs: object) -> None:
        raise Crash


@pytest.fixture
def store(redis: Redis, namespace: str) -> RedisSagaStore:
    return RedisSagaStore(redis, namespace)


def orchestrator(
    store: RedisSagaStore, transport: RabbitTransport, dispatcher: Dispatcher | None = None
) -> Orchestrator:
    dispatcher = dispatcher or Dispatcher(store, transport)
    return Orchestrator(store, dispatcher, builtins(store))


def builtins(store: RedisSagaStore) -> DefinitionRegistry:
    """The definitions that ship with the engine, nothing applied."""
    return DefinitionRegistry(store._redis, store._ns, builtins=BUILTINS, catalogue=CATALOGUE)


async def take(
    amqp: aio_pika.abc.AbstractConnection, topology: Topology, participant: Participant
) -> list[Envelope]:
    """Every command waiting in a participant's queue (taken off it)."""
    channel = await amqp.channel()
    queue = await channel.declare_queue(topology.participant_queue(participant), passive=True)
    found = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        found.append(Envelope.from_bytes(message.body))
    await channel.close()
    return found


def reply_to(command: Envelope, message_id: str = "reply-1") -> Delivery:
    reply = Envelope(
        message_id=message_id,
        saga_id=command.saga_id,
        correlation_id=command.saga_id,
        causation_id=command.message_id,
        type=REPLY_TYPE[command.type],
        sent_at=utc_now(),
        payload=SUCCESS[command.type],
    )
    return Delivery(body=reply.to_bytes())


async def started(
    store: RedisSagaStore, transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection
) -> Envelope:
    dispatcher = Dispatcher(store, transport)
    starter = SagaStarter(store, dispatcher, builtin=is_builtin)
    await starter.start(ORDER_SAGA, customer="ann@example.com", saga_input=order_input())
    await dispatcher.settle()
    (reserve,) = await take(amqp, transport.topology, "stock")
    return reserve


async def test_a_reply_applied_but_never_published_is_published_when_it_comes_again(
    store: RedisSagaStore, transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection
) -> None:
    reserve = await started(store, transport, amqp)
    crashing = Orchestrator(store, CrashingDispatcher(store, transport), builtins(store))
    with pytest.raises(Crash):
        await crashing.handle(reply_to(reserve))
    # The decision is durable, its command waits in the outbox, nothing was published.
    assert [c.envelope.type for c in await store.outbox(reserve.saga_id)] == ["ChargePayment"]
    assert await take(amqp, transport.topology, "payment") == []

    # The broker redelivers the unacked reply to a live orchestrator.
    dispatcher = Dispatcher(store, transport)
    await orchestrator(store, transport, dispatcher).handle(reply_to(reserve))
    (charge,) = await take(amqp, transport.topology, "payment")
    assert charge.type == "ChargePayment"
    await dispatcher.settle()
    assert await store.outbox(reserve.saga_id) == []
    events = [r.event.type for r in await store.events(reserve.saga_id)]
    assert events.count("StepSucceeded") == 1


async def test_the_relay_publishes_what_a_crash_left_in_an_outbox(
    store: RedisSagaStore, transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection
) -> None:
    crashing = SagaStarter(store, CrashingDispatcher(store, transport), builtin=is_builtin)
    with pytest.raises(Crash):
        await crashing.start(ORDER_SAGA, customer="ann@example.com", saga_input=order_input())
    dispatcher = Dispatcher(store, transport)
    relay = OutboxRelay(
        store, dispatcher, interval=1, grace=5, clock=lambda: utc_now() + timedelta(seconds=10)
    )
    assert await relay.run_once() == 1
    (reserve,) = await take(amqp, transport.topology, "stock")
    await dispatcher.settle()
    assert await store.outbox(reserve.saga_id) == []
    assert await store.outbox_pending() == 0
    assert await relay.run_once() == 0


async def test_the_relay_leaves_young_outboxes_to_their_writer(
    store: RedisSagaStore, transport: RabbitTransport
) -> None:
    crashing = SagaStarter(store, CrashingDispatcher(store, transport), builtin=is_builtin)
    with pytest.raises(Crash):
        await crashing.start(ORDER_SAGA, customer="ann@example.com", saga_input=order_input())
    relay = OutboxRelay(store, Dispatcher(store, transport), interval=1, grace=5)
    assert await relay.run_once() == 0


async def test_two_orchestrators_given_one_reply_apply_it_once(
    store: RedisSagaStore, transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection
) -> None:
    reserve = await started(store, transport, amqp)
    dispatchers = [Dispatcher(store, transport) for _ in range(2)]
    replicas = [orchestrator(store, transport, d) for d in dispatchers]
    delivery = reply_to(reserve)
    await asyncio.gather(*(r.handle(delivery) for r in replicas for _ in range(3)))
    await asyncio.gather(*(d.settle() for d in dispatchers))
    events = [r.event.type for r in await store.events(reserve.saga_id)]
    assert events == ["SagaStarted", "StepRequested", "StepSucceeded", "StepRequested"]
    charges = await take(amqp, transport.topology, "payment")
    # Maybe published more than once (a replica flushing the outbox it saw), but it is
    # one command: one id, one idempotency key, so the participant does it once.
    assert charges and {c.message_id for c in charges} == {charges[0].message_id}
    assert await store.outbox(reserve.saga_id) == []


async def test_a_reply_the_saga_ignored_is_judged_again_when_it_comes_again(
    store: RedisSagaStore, transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection
) -> None:
    # Not marked as applied: a participant answering a later try with the reply it gave
    # first (as the protocol allows) must not find it taken for a duplicate.
    reserve = await started(store, transport, amqp)
    replica = orchestrator(store, transport)
    await replica.apply(reserve.saga_id, CancelSaga(by="ops"), applied_id="cancel-1")
    late = reply_to(reserve, message_id="late-1")
    for _ in range(2):
        assert await replica.handle(late) == ACK
    events = [r.event for r in await store.events(reserve.saga_id)]
    ignored = [e for e in events if isinstance(e, ReplyIgnored)]
    assert [(e.reply_id, e.causation_id) for e in ignored] == [("late-1", reserve.message_id)] * 2
    # An applied reply is marked: the same reply again is a duplicate and changes nothing.
    (release,) = await take(amqp, transport.topology, "stock")
    for _ in range(2):
        await replica.handle(reply_to(release, message_id="released-1"))
    after = [r.event.type for r in await store.events(reserve.saga_id)]
    assert after[len(events) :] == ["StepCompensated", "SagaCompensated"]


async def test_a_reply_for_an_unknown_saga_is_dead_lettered(
    store: RedisSagaStore, transport: RabbitTransport
) -> None:
    ghost = Envelope(
        message_id="c1",
        saga_id="ghost",
        correlation_id="ghost",
        type="ReserveStock",
        sent_at=utc_now(),
    )
    outcome = await orchestrator(store, transport).handle(reply_to(ghost))
    assert outcome == DeadLetter("unknown saga ghost")
    garbage = await orchestrator(store, transport).handle(Delivery(body=b"{not json"))
    assert isinstance(garbage, DeadLetter) and garbage.reason.startswith("unparseable reply")


async def test_a_reply_to_a_saga_the_conformance_check_made_up_is_acked_and_ignored(
    store: RedisSagaStore, transport: RabbitTransport
) -> None:
    probe = Envelope(
        message_id="c1",
        saga_id=f"{CHECK_SAGA_PREFIX}0123abcd.1",
        correlation_id=f"{CHECK_SAGA_PREFIX}0123abcd.1",
        type="ReserveStock",
        sent_at=utc_now(),
    )
    assert await orchestrator(store, transport).handle(reply_to(probe)) == ACK
    assert await store.load(probe.saga_id) is None


async def test_a_command_no_queue_takes_stays_in_the_outbox(
    store: RedisSagaStore, transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection
) -> None:
    channel = await amqp.channel()
    await channel.queue_delete(transport.topology.participant_queue("stock"))
    starter = SagaStarter(store, Dispatcher(store, transport), builtin=is_builtin)
    state = await starter.start(ORDER_SAGA, customer="ann@example.com", saga_input=order_input())
    [command] = await store.outbox(state.saga_id)
    assert command.envelope.type == "ReserveStock"
    with pytest.raises(PUBLISH_ERRORS):
        await transport.publish_command("stock", command.envelope)


class CountingStore(RedisSagaStore):
    """The real store, noting how many sagas each outbox clearing covered."""

    batches: list[int]

    async def clear_outboxes(self, batch: list[tuple[str, list[str], int]]) -> None:
        self.batches.append(len(batch))
        await super().clear_outboxes(batch)


async def test_published_commands_leave_their_outboxes_in_batches(
    redis: Redis, namespace: str, transport: RabbitTransport
) -> None:
    store = CountingStore(redis, namespace)
    store.batches = []
    dispatcher = Dispatcher(store, transport)
    starter = SagaStarter(store, dispatcher, builtin=is_builtin)
    states = await asyncio.gather(
        *(
            starter.start(ORDER_SAGA, customer="ann@example.com", saga_input=order_input())
            for _ in range(20)
        )
    )
    await dispatcher.settle()
    assert sum(store.batches) == 20 and len(store.batches) < 20
    for state in states:
        assert await store.outbox(state.saga_id) == []
    assert await store.outbox_pending() == 0


class UnreadableStore(RedisSagaStore):
    """The real store, whose sagas cannot be read (their writes go through)."""

    async def load(self, saga_id: str) -> None:
        raise AssertionError(f"saga {saga_id} was read")


async def test_a_starter_beside_the_orchestrator_spares_the_first_reply_a_read(
    redis: Redis,
    namespace: str,
    transport: RabbitTransport,
    amqp: aio_pika.abc.AbstractConnection,
) -> None:
    store = UnreadableStore(redis, namespace)
    dispatcher = Dispatcher(store, transport)
    states = StateCache(16)
    starter = SagaStarter(store, dispatcher, builtin=is_builtin, states=states)
    state = await starter.start(ORDER_SAGA, customer="ann@example.com", saga_input=order_input())
    await dispatcher.settle()
    (reserve,) = await take(amqp, transport.topology, "stock")

    shared = Orchestrator(store, dispatcher, builtins(store), states=states)
    assert await shared.handle(reply_to(reserve)) == ACK
    await dispatcher.settle()

    [charge] = await take(amqp, transport.topology, "payment")
    assert charge.saga_id == state.saga_id
    # An orchestrator of its own (another process) reads the saga, as before.
    alone = Orchestrator(store, dispatcher, builtins(store))
    with pytest.raises(AssertionError, match="was read"):
        await alone.handle(reply_to(charge, "reply-2"))
