"""`saga bench`: order sagas through the real path on the real servers, measured.

The orchestrator and the participants run as in production, either in this process
(one connection each) or as child processes; sagas start the way the API starts them
(durable in Redis, then published); the run uses a fresh namespace and removes it after.
"""

import asyncio
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any, Literal

import aio_pika

from contracts.messages import OrderItem
from contracts.topology import PARTICIPANTS, Topology
from saga.bootstrap import InProcessWorkers, definitions, transport_for
from saga.connections import redis_client
from saga.core.order import OrderInput
from saga.namespaces import delete_namespace
from saga.orchestrator import SagaStarter
from saga.outbox import Dispatcher
from saga.settings import Settings
from saga.store import RedisSagaStore
from services.order import OrderService
from services.payment import PaymentService
from services.stock import StockService

Mode = Literal["in-process", "processes"]
CUSTOMER = "bench@example.com"
VENDOR = "vendor@example.com"


@dataclass(frozen=True)
class BenchResult:
    mode: Mode
    sagas: int
    concurrency: int
    completed: int
    failed: int
    seconds: float
    sagas_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    messages_per_s: float
    redis_commands_per_saga: float
    cpu_seconds: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def run_bench(settings: Settings, *, sagas: int, concurrency: int, mode: Mode) -> BenchResult:
    """Run `sagas` order sagas with `concurrency` in flight; clean up the namespace."""
    namespace = f"bench-{uuid.uuid4().hex[:10]}"
    config = settings.model_copy(update={"namespace": namespace})
    redis = redis_client(config)
    children: dict[str, subprocess.Popen[bytes]] = {}
    workers = InProcessWorkers(config, redis, lambda: transport_for(config))
    starter_transport = transport_for(config)
    try:
        await _seed(redis, namespace, sagas)
        if mode == "processes":
            children = _spawn_workers(config)
        else:
            await workers.start()
        await starter_transport.connect()
        await _wait_for_consumers(config)
        store = RedisSagaStore(redis, namespace)
        starter = SagaStarter(store, Dispatcher(store, starter_transport))
        order = OrderInput(
            customer=CUSTOMER,
            vendor=VENDOR,
            delivery_address="1 Bench Road",
            items=[OrderItem(product_id="widget", quantity=1)],
            payment_method="Credit Card",
        )
        commands_before = await _redis_commands(redis)
        cpu_before = _cpu(children)
        started = time.monotonic()
        ids = await _drive(store, starter, order, config, sagas, concurrency)
        seconds = time.monotonic() - started
        cpu = {k: v - cpu_before.get(k, 0.0) for k, v in _cpu(children).items()}
        redis_commands = await _redis_commands(redis) - commands_before
        states = await store.load_many(ids)
        latencies = sorted(
            (s.updated_at - s.created_at).total_seconds() * 1000 for s in states if s.terminal
        )
        completed = sum(1 for s in states if s.status == "completed")
        # Every command sent has a reply: two messages per attempt of a step or compensation.
        messages = sum(
            2 * (step.attempts + step.compensation_attempts) for s in states for step in s.steps
        )
        return BenchResult(
            mode=mode,
            sagas=sagas,
            concurrency=concurrency,
            completed=completed,
            failed=sagas - completed,
            seconds=round(seconds, 3),
            sagas_per_s=round(sagas / seconds, 1),
            p50_ms=round(_percentile(latencies, 50), 1),
            p95_ms=round(_percentile(latencies, 95), 1),
            p99_ms=round(_percentile(latencies, 99), 1),
            messages_per_s=round(messages / seconds, 1),
            redis_commands_per_saga=round(redis_commands / sagas, 1),
            cpu_seconds={k: round(v, 2) for k, v in cpu.items()},
        )
    finally:
        await workers.stop()
        await starter_transport.close()
        for child in children.values():
            child.terminate()
        for child in children.values():
            child.wait(timeout=15)
        await delete_namespace(redis, config.rabbitmq_url, namespace)
        await redis.aclose()


async def _seed(redis: Any, namespace: str, sagas: int) -> None:
    await StockService(redis, namespace).set_product(
        "widget", quantity=sagas * 2, price=Decimal("1.00")
    )
    await PaymentService(redis, namespace).deposit(CUSTOMER, Decimal(sagas * 2))
    await OrderService(redis, namespace).add_vendor(VENDOR)


def _spawn_workers(config: Settings) -> dict[str, subprocess.Popen[bytes]]:
    env = {**os.environ, "SAGA_NAMESPACE": config.namespace, "SAGA_LOG_LEVEL": "warning"}
    commands: dict[str, list[str]] = {"orchestrator": ["orchestrator"]}
    commands.update({p: ["service", p] for p in PARTICIPANTS})
    return {
        name: subprocess.Popen(
            [sys.executable, "-m", "saga", *args], env=env, stdout=subprocess.DEVNULL
        )
        for name, args in commands.items()
    }


async def _wait_for_consumers(config: Settings, within: float = 30) -> None:
    topology = Topology(config.namespace)
    queues = [topology.orchestrator_queue, *(topology.participant_queue(p) for p in PARTICIPANTS)]
    deadline = time.monotonic() + within
    async with await aio_pika.connect(config.rabbitmq_url) as connection:
        while True:
            channel = await connection.channel()
            counts = []
            for name in queues:
                queue = await channel.declare_queue(name, passive=True)
                counts.append(queue.declaration_result.consumer_count or 0)
            await channel.close()
            if all(counts):
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the workers did not start consuming")
            await asyncio.sleep(0.1)


async def _drive(
    store: RedisSagaStore,
    starter: SagaStarter,
    order: OrderInput,
    config: Settings,
    sagas: int,
    concurrency: int,
) -> list[str]:
    """Keep `concurrency` sagas in flight until `sagas` have ended (or a minute passes idle).

    Sagas are started concurrently, each the API's way; one poll of the active index
    tells which have ended, and each that ends makes room for the next.
    """
    definition = definitions(config)["order"]
    ids: list[str] = []
    in_flight: set[str] = set()
    starting: set[asyncio.Task[None]] = set()
    launched = 0
    last_progress = time.monotonic()

    failures: list[BaseException] = []

    async def start_one() -> None:
        try:
            state = await starter.start(definition, customer=CUSTOMER, saga_input=order)
        except Exception as exc:  # reported below: a bench that cannot start sagas stops
            failures.append(exc)
            return
        ids.append(state.saga_id)
        in_flight.add(state.saga_id)

    while launched < sagas or in_flight or starting:
        if failures:
            raise RuntimeError(f"could not start a saga: {failures[0]!r}") from failures[0]
        while len(in_flight) + len(starting) < concurrency and launched < sagas:
            task = asyncio.create_task(start_one())
            starting.add(task)
            task.add_done_callback(starting.discard)
            launched += 1
        await asyncio.sleep(0.05)
        pending = list(in_flight)
        scores = await store.active_scores(pending)
        ended = {saga_id for saga_id, score in zip(pending, scores, strict=True) if score is None}
        if ended:
            in_flight.difference_update(ended)
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > 60:
            break  # stuck: report what did not end
    return ids


async def _redis_commands(redis: Any) -> int:
    info = await redis.info("stats")
    return int(info["total_commands_processed"])


def _cpu(children: dict[str, subprocess.Popen[bytes]]) -> dict[str, float]:
    """CPU seconds (user + system) of this process and of each child so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = {"bench": usage.ru_utime + usage.ru_stime}
    ticks = os.sysconf("SC_CLK_TCK")
    for name, child in children.items():
        try:
            with open(f"/proc/{child.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu[name] = (int(fields[11]) + int(fields[12])) / ticks
    return cpu


def _percentile(values: list[float], p: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]
