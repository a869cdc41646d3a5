"""Participants over HTTP on the real servers: a real HTTP endpoint on loopback, the
orchestrator, its timers and the HTTP bridge on the real RabbitMQ and Redis."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from redis.asyncio import Redis
from structlog.testing import capture_logs

from contracts.topology import Topology
from saga.core.document import DefinitionError, compile_definition, read_definition
from saga.core.state import SagaState
from saga.http_participants import HttpParticipants
from saga.orchestrator import Orchestrator, SagaStarter, TimerLoop
from saga.outbox import Dispatcher
from saga.rabbit import RabbitTransport
from saga.registry import DefinitionConflict, DefinitionRegistry
from saga.store import RedisSagaStore
from services.messages import CATALOGUE
from tests.e2e.system import free_port
from tests.servers import RABBITMQ_URL, SHOP_PARTICIPANTS
from tests.shop_saga import BUILTINS
from tests.waiting import eventually

Answer = tuple[int, Any] | str  # (status, JSON body), or "slow": no answer in time


@dataclass
class Endpoint:
    """An HTTP service on loopback that answers each command as the test scripts it."""

    port: int = field(default_factory=free_port)
    script: dict[str, list[Answer]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/{service}/{command}")
        async def command(service: str, command: str, request: Request) -> Response:
            body = await request.json()
            self.calls.append((f"{service}/{command}", dict(request.headers), body))
            answers = self.script.get(command) or [(200, {"ok": True, "echo": body})]
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
            if answer == "slow":
                await asyncio.sleep(1.0)
                return JSONResponse({"late": True})
            if answer == "huge":
                return JSONResponse({"blob": "x" * 100_000})
            status, payload = answer
            return JSONResponse(payload, status_code=status)

        return app

    def made(self, command: str) -> list[tuple[str, dict[str, str], Any]]:
        return [c for c in self.calls if c[0].endswith(f"/{command}")]


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    served = Endpoint()
    config = uvicorn.Config(served.app(), host="127.0.0.1", port=served.port, log_level="error")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: asyncio.sleep(0, server.started), what="the endpoint serves")
    yield served
    server.should_exit = True
    await task


def pricing(port: int, *, price_attempts: int = 3, threshold: int = 5) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    return {
        "name": "pricing",
        "version": 1,
        "input": {"type": "object", "required": ["item"]},
        "participants": {
            "holds": {"http": {"url": f"{base}/holds", "timeout": "300ms"}},
            "quotes": {
                "http": {
                    "url": f"{base}/quotes",
                    "timeout": "300ms",
                    "breaker": {"threshold": threshold, "reset_after": "30s"},
                }
            },
        },
        "steps": [
            {
                "name": "hold",
                "participant": "holds",
                "action": {"command": "Hold", "input": {"item": "{{input.item}}"}},
                "compensation": {
                    "command": "Release",
                    "input": {"hold": "{{steps.hold.result | optional}}"},
                },
                "timeout": "2s",
                "compensation_retry": {"max_attempts": 2, "backoff": "10ms"},
            },
            {
                "name": "price",
                "participant": "quotes",
                "action": {"command": "Price", "input": {"item": "{{input.item}}"}},
                "compensation": {"command": "Unprice"},
                "timeout": "2s",
                "retry": {"max_attempts": price_attempts, "backoff": "10ms", "max_backoff": "20ms"},
                "compensation_retry": {"max_attempts": 2, "backoff": "10ms"},
            },
        ],
    }


@dataclass
class Running:
    store: RedisSagaStore
    starter: SagaStarter
    registry: DefinitionRegistry

    async def run(self, item: str = "apple") -> SagaState:
        state = await self.starter.start(
            await self.registry.latest("pricing"),
            customer="ann@example.com",
            saga_input={"item": item},
        )
        return await eventually(
            lambda: self.store.load(state.saga_id),
            until=lambda s: s is not None and s.terminal,
            within=20,
            what="the saga ends",
        )


@asynccontextmanager
async def running(
    redis: Redis, namespace: str, definition: dict[str, Any]
) -> AsyncIterator[Running]:
    transport = RabbitTransport(RABBITMQ_URL, Topology(namespace, SHOP_PARTICIPANTS))
    await transport.connect()
    store = RedisSagaStore(redis, namespace)
    registry = DefinitionRegistry(redis, namespace, builtins=BUILTINS, catalogue=CATALOGUE)
    await registry.apply(read_definition(definition))
    dispatcher = Dispatcher(store, transport)
    orchestrator = Orchestrator(store, dispatcher, registry)
    await transport.consume(transport.topology.orchestrator_queue, orchestrator.handle)
    bridge = HttpParticipants(registry, transport, refresh=0.1)
    timers = TimerLoop(store.timers, orchestrator, interval=0.02, lease=5)
    stop = asyncio.Event()
    loops = [asyncio.create_task(bridge.run(stop)), asyncio.create_task(timers.run(stop))]
    await eventually(lambda: asyncio.sleep(0, len(transport.topology.participants) == 5))
    try:
        yield Running(store, SagaStarter(store, dispatcher, builtin=registry.is_builtin), registry)
    finally:
        stop.set()
        await asyncio.gather(*loops)
        await transport.stop_consuming(grace=2)
        await dispatcher.settle()
        await bridge.aclose()
        await transport.close()
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            for name in ("holds", "quotes"):
                with suppress(Exception):
                    await channel.queue_delete(f"{namespace}.{name}")


async def test_each_command_is_a_post_with_the_units_idempotency_key(
    redis: Redis, namespace: str, endpoint: Endpoint
) -> None:
    with capture_logs() as logs:
        async with running(redis, namespace, pricing(endpoint.port)) as system:
            state = await system.run("apple")
    assert state.status == "completed"
    assert state.results["price"] == {"ok": True, "echo": {"item": "apple"}}
    handled = [line for line in logs if line["event"] == "HTTP command handled"]
    assert sorted(
        (line.get("step"), line.get("action"), line.get("replay")) for line in handled
    ) == [
        ("hold", "execute", 0),
        ("price", "execute", 0),
    ]
    (hold,) = endpoint.made("Hold")
    path, headers, body = hold
    assert (path, body) == ("holds/Hold", {"item": "apple"})
    assert headers["idempotency-key"] == f"{state.saga_id}:hold:execute"
    assert headers["x-saga-id"] == state.saga_id and headers["x-saga-command"] == "Hold"


async def test_a_4xx_is_a_business_failure_and_the_steps_before_are_undone(
    redis: Redis, namespace: str, endpoint: Endpoint
) -> None:
    endpoint.script["Price"] = [(409, {"reason": "out_of_season", "detail": "no apples now"})]
    async with running(redis, namespace, pricing(endpoint.port)) as system:
        state = await system.run()
    assert state.status == "compensated" and state.reason == "out_of_season"
    assert [s.status for s in state.steps] == ["compensated", "failed"]
    (release,) = endpoint.made("Release")
    assert release[2] == {"hold": {"ok": True, "echo": {"item": "apple"}}}  # its own result
    assert endpoint.made("Unprice") == []  # a refusal did nothing: nothing to undo


async def test_a_5xx_is_retried_under_the_same_idempotency_key(
    redis: Redis, namespace: str, endpoint: Endpoint
) -> None:
    endpoint.script["Price"] = [(503, {}), (502, {}), (200, {"price": "1.20"})]
    async with running(redis, namespace, pricing(endpoint.port)) as system:
        state = await system.run()
    assert state.status == "completed" and state.results["price"] == {"price": "1.20"}
    keys = {headers["idempotency-key"] for _, headers, _ in endpoint.made("Price")}
    assert len(endpoint.made("Price")) == 3 and keys == {f"{state.saga_id}:price:execute"}


async def test_a_call_that_never_answers_in_time_may_have_worked_so_it_is_undone(
    redis: Redis, namespace: str, endpoint: Endpoint
) -> None:
    endpoint.script["Price"] = ["slow"]
    async with running(redis, namespace, pricing(endpoint.port, price_attempts=2)) as system:
        state = await system.run()
    assert state.status == "compensated" and state.reason == "timeout"
    assert len(endpoint.made("Price")) == 2
    assert len(endpoint.made("Unprice")) == 1 and len(endpoint.made("Release")) == 1
    assert [s.status for s in state.steps] == ["compensated", "compensated"]


async def test_a_participant_that_keeps_failing_is_not_called_while_its_circuit_is_open(
    redis: Redis, namespace: str, endpoint: Endpoint
) -> None:
    endpoint.script["Price"] = [(503, {"detail": "down"})]
    document = pricing(endpoint.port, price_attempts=6, threshold=3)
    async with running(redis, namespace, document) as system:
        state = await system.run()
    assert len(endpoint.made("Price")) == 3  # then the circuit opened: no more calls
    events = await system.store.events(state.saga_id)
    reasons = [r.event.reason for r in events if r.event.type == "AttemptFailed"]  # type: ignore[union-attr]
    assert reasons[:6] == ["http_503"] * 3 + ["circuit_open"] * 3
    # A 503 may have done the work: the step is undone, but its participant is not
    # called while its circuit is open, so the saga waits for a human (saga replay).
    assert [s.status for s in state.steps] == ["compensated", "compensation_failed"]
    assert state.status == "failed"
    assert state.reason == "compensation of price failed: circuit_open"
    assert endpoint.made("Unprice") == []


async def test_an_http_participant_is_reached_one_way_in_a_namespace(
    redis: Redis, namespace: str, endpoint: Endpoint
) -> None:
    registry = DefinitionRegistry(redis, namespace, builtins=BUILTINS, catalogue=CATALOGUE)
    await registry.apply(read_definition(pricing(endpoint.port)))
    elsewhere = pricing(endpoint.port + 1) | {"name": "repricing"}
    with pytest.raises(DefinitionConflict, match="participant holds is defined otherwise"):
        await registry.apply(read_definition(elsewhere))


async def test_an_answer_too_large_to_keep_is_a_protocol_error(
    redis: Redis, namespace: str, endpoint: Endpoint
) -> None:
    endpoint.script["Price"] = ["huge"]
    async with running(redis, namespace, pricing(endpoint.port)) as system:
        state = await system.run()
    assert state.status == "compensated" and state.reason == "protocol_error"
    assert len(endpoint.made("Unprice")) == 1  # it may have priced: undone to be sure
    assert "blob" not in str(await system.store.events(state.saga_id))


def test_an_http_step_names_no_reply_and_outlasts_its_call() -> None:
    document = pricing(8080)
    document["steps"][0]["action"]["reply"] = "Held"
    with pytest.raises(DefinitionError, match="its 2xx answer is the reply"):
        compile_definition(read_definition(document))
    document = pricing(8080)
    document["steps"][1]["timeout"] = "200ms"
    with pytest.raises(DefinitionError, match="must be longer than its participant's HTTP timeout"):
        compile_definition(read_definition(document))
