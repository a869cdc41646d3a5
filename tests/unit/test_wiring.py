"""The one bootstrap builds the whole graph with other parts plugged in: here the engine
alone (no extension), on fakeredis and the in-memory transport, runs a user's saga
against a participant it has no contracts for; and the shop's extension brings its
definitions, contracts and participants into the same graph."""

import asyncio
import time

import pytest
from fakeredis import FakeAsyncRedis

from contracts.envelope import Envelope, reply_to
from saga.bootstrap import InProcessWorkers, Wiring
from saga.clock import utc_now
from saga.core.state import SagaState
from saga.definitions import read_text
from saga.extensions import Extensions
from saga.memory import InMemoryTransport
from saga.settings import Settings
from saga.transport import ACK, Delivery, Outcome
from services.shop import SHOP
from tests.shop_saga import ORDER_SAGA
from tests.unit.sagas import REPLY_TYPE, SUCCESS, order_input

GREETING = """
name: greeting
version: 1
steps:
  - name: greet
    participant: greeter
    action: {command: Greet, input: {who: "{{saga.customer}}"}, reply: Greeted}
summary:
  said: "{{steps.greet.result.said}}"
"""


async def test_the_engine_alone_runs_a_users_saga_on_plugged_in_parts() -> None:
    settings = Settings(namespace="alone")
    redis = FakeAsyncRedis(decode_responses=True)
    transports: list[InMemoryTransport] = []
    wiring = Wiring(
        settings, extensions=Extensions(), redis=redis, transport=lambda _: transports[0]
    )
    transports.append(InMemoryTransport(wiring.topology))
    memory = transports[0]
    assert wiring.builtins == {} and wiring.extensions.participants == {}
    workers = InProcessWorkers(wiring)
    await workers.start()
    try:
        spec = read_text(GREETING)
        assert await wiring.registry.apply(spec) == "created"
        await memory.declare_participants(spec.named_participants())

        async def greeter(delivery: Delivery) -> Outcome:
            command = Envelope.from_bytes(delivery.body)
            said = f"hello {command.payload['who']}"
            await memory.publish_reply(reply_to(command, "Greeted", {"said": said}, at=utc_now()))
            return ACK

        await memory.consume(memory.topology.participant_queue("greeter"), greeter)
        starter = wiring.starter(wiring.dispatcher(memory))
        definition = await wiring.registry.latest("greeting")
        state = await starter.start(definition, customer="ann@example.com", saga_input={})
        deadline = time.monotonic() + 10
        while (found := await wiring.store.load(state.saga_id)) is None or not found.terminal:
            assert time.monotonic() < deadline, found
            await asyncio.sleep(0.01)
        assert found.status == "completed"
        assert definition.summarize(found) == {"said": "hello ann@example.com"}
    finally:
        await workers.stop()
        await wiring.aclose()
        await redis.aclose()


def test_the_shops_extension_brings_its_parts_into_the_graph() -> None:
    wiring = Wiring(Settings(namespace="shop"), extensions=Extensions((SHOP,)), redis=None)
    try:
        assert set(wiring.builtins) == {"order"}
        assert set(wiring.catalogue.participants) == {"stock", "payment", "order"}
        assert set(wiring.topology.participants) == {"stock", "payment", "order"}
        assert wiring.registry.is_builtin("order", 1)
    finally:
        asyncio.run(wiring.aclose())


async def test_a_starter_beside_the_orchestrator_hands_it_new_sagas_and_no_other_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redis = FakeAsyncRedis(decode_responses=True)
    transports: list[InMemoryTransport] = []
    wiring = Wiring(
        Settings(namespace="beside"),
        extensions=Extensions((SHOP,)),
        redis=redis,
        transport=lambda _: transports[0],
    )
    transports.append(InMemoryTransport(wiring.topology))
    dispatcher = wiring.dispatcher(transports[0])
    orchestrator = wiring.orchestrator(dispatcher)
    started = [
        await starter.start(ORDER_SAGA, customer="ann@example.com", saga_input=order_input())
        for starter in (
            wiring.starter(dispatcher, replies_here=True),
            wiring.starter(dispatcher),  # the front door's process
        )
    ]
    read: list[str] = []
    load = wiring.store.load

    async def noted(saga_id: str) -> SagaState | None:
        read.append(saga_id)
        return await load(saga_id)

    monkeypatch.setattr(wiring.store, "load", noted)
    try:
        for state in started:
            [command] = await wiring.store.outbox(state.saga_id)
            envelope = command.envelope
            reply = reply_to(
                envelope, REPLY_TYPE[envelope.type], SUCCESS[envelope.type], at=utc_now()
            )
            assert await orchestrator.handle(Delivery(body=reply.to_bytes())) == ACK
        assert read == [started[1].saga_id]
    finally:
        await dispatcher.settle()
        await wiring.aclose()
        await redis.aclose()
