"""`saga bench`: order sagas through the real path on the real servers, measured.

The orchestrator and the participants run as in production, either in this process
(one connection each) or as child processes; sagas start the way the API starts them
(durable in Redis, then published); the run uses a fresh namespace and removes it after.
"""

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from redis.asyncio.cluster import RedisCluster

from bench.baseline import run_baseline
from contracts.topology import Topology
from saga.amqp_nodes import connect_pika, node_urls
from saga.bootstrap import InProcessWorkers, Wiring
from saga.connections import AnyRedis, cluster_nodes, is_cluster_url, redis_client
from saga.core.definition import SagaDefinition
from saga.eventloop import loop_name
from saga.extensions import Extensions
from saga.keyspace import Keyspace
from saga.namespaces import delete_namespace
from saga.orchestrator import SagaStarter
from saga.settings import Settings
from saga.store import RedisSagaStore
from services.messages import OrderItem
from services.order import OrderService
from services.orders import OrderInput
from services.payment import PaymentService
from services.shop import SHOP
from services.stock import StockService

# What the bench measures runs the shop, whatever else is installed.
EXTENSIONS = Extensions((SHOP,))

Mode = Literal["in-process", "processes"]
CUSTOMER = "bench@example.com"
VENDOR = "vendor@example.com"
MB = 1024 * 1024


@dataclass(frozen=True)
class Sample:
    """Memory at one point of a run: Redis's, and each process's resident set."""

    sagas_done: int
    redis_mb: float  # on a Redis Cluster: its primaries' together
    redis_keys: int  # every key of the run's namespace, the services' business data too
    saga_keys: int  # the orchestrator's keys of single sagas (logs, states, applied ids)
    rss_mb: dict[str, float]


@dataclass(frozen=True)
class BaselineResult:
    """The hand-written flow's figures, measured in the same invocation."""

    sagas_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    completed: int
    failed: int
    cpu_seconds: float


@dataclass(frozen=True)
class BenchResult:
    namespace: str  # the run's own, removed after it
    mode: Mode
    event_loop: str
    orchestrators: int
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
    # Of them, by command (a script's own commands by name too, besides its EVALSHA).
    redis_commands_by_name: dict[str, float]
    # Redis's CPU (user + system, as its INFO says) per saga: all of the server's work,
    # so on a Redis that other clients share, theirs too.
    redis_cpu_ms_per_saga: float
    # Of it, Redis's time running scripts (their inner commands included), as its
    # commandstats count it: almost all of a saga's Redis work is in scripts.
    redis_script_ms_per_saga: float
    cpu_seconds: dict[str, float]
    cpu_ms_per_saga: dict[str, float]
    memory: list[Sample]
    baseline: BaselineResult | None = None
    throughput_ratio: float | None = None
    p99_ratio: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bench_order() -> OrderInput:
    """The order every saga of the bench places."""
    return OrderInput(
        customer=CUSTOMER,
        vendor=VENDOR,
        delivery_address="1 Bench Road",
        items=[OrderItem(product_id="widget", quantity=1)],
        payment_method="Credit Card",
    )


async def run_bench(
    settings: Settings,
    *,
    sagas: int,
    concurrency: int,
    mode: Mode,
    orchestrators: int = 1,
    baseline: bool = False,
) -> BenchResult:
    """Run `sagas` order sagas with `concurrency` in flight, then (if asked) the
    hand-written baseline with the same numbers; clean up the namespace."""
    if orchestrators > 1 and mode != "processes":
        raise ValueError("more than one orchestrator needs --processes")
    result = await _run_system(
        settings, sagas=sagas, concurrency=concurrency, mode=mode, orchestrators=orchestrators
    )
    if not baseline:
        return result
    redis = redis_client(settings)
    try:
        run = await run_baseline(settings.rabbitmq_url, redis, sagas=sagas, concurrency=concurrency)
    finally:
        await redis.aclose()
    floor = BaselineResult(
        sagas_per_s=round(run.completed / run.seconds, 1),
        p50_ms=round(percentile(run.latencies_ms, 50), 1),
        p95_ms=round(percentile(run.latencies_ms, 95), 1),
        p99_ms=round(percentile(run.latencies_ms, 99), 1),
        completed=run.completed,
        failed=sagas - run.completed,
        cpu_seconds=round(run.cpu_seconds, 2),
    )
    return replace(
        result,
        baseline=floor,
        throughput_ratio=round(result.sagas_per_s / floor.sagas_per_s, 2),
        p99_ratio=round(result.p99_ms / floor.p99_ms, 2),
    )


async def _run_system(
    settings: Settings, *, sagas: int, concurrency: int, mode: Mode, orchestrators: int
) -> BenchResult:
    namespace = f"bench-{uuid.uuid4().hex[:10]}"
    config = settings.model_copy(update={"namespace": namespace})
    wiring = Wiring(config, extensions=EXTENSIONS)
    redis = wiring.redis
    children: dict[str, subprocess.Popen[bytes]] = {}
    workers = InProcessWorkers(wiring)
    starter_transport = wiring.transport("bench")
    try:
        await _seed(redis, namespace, sagas)
        if mode == "processes":
            children = _spawn_workers(config, orchestrators)
        else:
            await workers.start()
        await starter_transport.connect()
        await _wait_for_consumers(config)
        store = wiring.store
        dispatcher = wiring.dispatcher(starter_transport)
        starter = wiring.starter(dispatcher, replies_here=mode == "in-process")
        definition = await wiring.registry.latest("order")
        order = bench_order()
        processes = _processes(config, children)
        samples: list[Sample] = []

        async def sample(done: int) -> None:
            samples.append(await _sample(redis, store.keyspace, processes, done))

        await sample(0)
        redis_before = await _redis_figures(redis)
        cpu_before = _cpu(processes)
        started = time.monotonic()
        ended = await _drive(starter, definition, order, sagas, concurrency, store, sample)
        seconds = time.monotonic() - started
        cpu = {k: v - cpu_before.get(k, 0.0) for k, v in _cpu(processes).items()}
        redis_after = await _redis_figures(redis)
        await dispatcher.settle()
        await sample(len(ended))
        latencies = sorted(e.latency_ms for e in ended.values() if e.status == "completed")
        completed = len(latencies)
        # Every command sent has a reply: two messages per attempt of a step or compensation.
        messages = sum(e.messages for e in ended.values())
        return BenchResult(
            namespace=namespace,
            mode=mode,
            event_loop=loop_name(settings.event_loop),
            orchestrators=orchestrators,
            sagas=sagas,
            concurrency=concurrency,
            completed=completed,
            failed=sagas - completed,
            seconds=round(seconds, 3),
            sagas_per_s=round(sagas / seconds, 1),
            p50_ms=round(percentile(latencies, 50), 1),
            p95_ms=round(percentile(latencies, 95), 1),
            p99_ms=round(percentile(latencies, 99), 1),
            messages_per_s=round(messages / seconds, 1),
            redis_commands_per_saga=round(
                (redis_after.commands - redis_before.commands) / sagas, 1
            ),
            redis_commands_by_name=redis_after.calls_per_saga(redis_before, sagas),
            redis_cpu_ms_per_saga=round(
                (redis_after.cpu_seconds - redis_before.cpu_seconds) * 1000 / sagas, 3
            ),
            redis_script_ms_per_saga=round(
                (redis_after.script_usec - redis_before.script_usec) / 1000 / sagas, 3
            ),
            cpu_seconds={k: round(v, 2) for k, v in cpu.items()},
            cpu_ms_per_saga={k: round(v * 1000 / sagas, 3) for k, v in cpu.items()},
            memory=samples,
        )
    finally:
        await workers.stop()
        await starter_transport.close()
        for child in children.values():
            child.terminate()
        for child in children.values():
            child.wait(timeout=15)
        await delete_namespace(redis, config.rabbitmq_url, namespace)
        await wiring.aclose()


async def _seed(redis: Any, namespace: str, sagas: int) -> None:
    await StockService(redis, namespace).set_product(
        "widget", quantity=sagas * 2, price=Decimal("1.00")
    )
    await PaymentService(redis, namespace).deposit(CUSTOMER, Decimal(sagas * 2))
    await OrderService(redis, namespace).add_vendor(VENDOR)


def _spawn_workers(config: Settings, orchestrators: int) -> dict[str, subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "SAGA_NAMESPACE": config.namespace,
        "SAGA_RETENTION": str(config.retention),
        "SAGA_LOG_LEVEL": "warning",
        "SAGA_EXTENSIONS": ",".join(EXTENSIONS.names),
    }
    commands: dict[str, list[str]] = {}
    for n in range(1, orchestrators + 1):
        commands["orchestrator" if orchestrators == 1 else f"orchestrator{n}"] = ["orchestrator"]
    commands.update({p: ["service", p] for p in EXTENSIONS.participants})
    return {
        name: subprocess.Popen(
            [sys.executable, "-m", "saga", *args], env=env, stdout=subprocess.DEVNULL
        )
        for name, args in commands.items()
    }


async def _wait_for_consumers(config: Settings, within: float = 30) -> None:
    topology = Topology(config.namespace)
    queues = [
        topology.orchestrator_queue,
        *(topology.participant_queue(p) for p in EXTENSIONS.participants),
    ]
    deadline = time.monotonic() + within
    async with await connect_pika(config.rabbitmq_url) as connection:
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


@dataclass(frozen=True)
class Ended:
    """What the bench keeps of a saga that ended (read when it ends: it may be trimmed)."""

    status: str
    latency_ms: float
    messages: int


async def _drive(
    starter: SagaStarter,
    definition: SagaDefinition,
    order: OrderInput,
    sagas: int,
    concurrency: int,
    store: RedisSagaStore,
    sample: Callable[[int], Awaitable[None]],
) -> dict[str, Ended]:
    """Keep `concurrency` sagas in flight until `sagas` have ended (or a minute passes idle).

    Sagas are started concurrently, each the API's way; a poll of the active index tells
    which have ended, and each that ends makes room for the next. Memory is sampled at
    every tenth of the run.
    """
    ended: dict[str, Ended] = {}
    in_flight: set[str] = set()
    starting: set[asyncio.Task[None]] = set()
    launched = 0
    last_progress = time.monotonic()
    tenth = max(1, sagas // 10)
    next_sample = tenth
    failures: list[BaseException] = []

    async def start_one() -> None:
        try:
            state = await starter.start(definition, customer=CUSTOMER, saga_input=order)
        except Exception as exc:  # reported below: a bench that cannot start sagas stops
            failures.append(exc)
            return
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
        done = [saga_id for saga_id, score in zip(pending, scores, strict=True) if score is None]
        if done:
            in_flight.difference_update(done)
            ended.update(await _ended(store, done))
            last_progress = time.monotonic()
            if len(ended) >= next_sample and len(ended) < sagas:
                await sample(len(ended))
                # The next tenth not yet reached: a poll that saw several tenths end
                # takes one sample, and the next one is not left behind.
                next_sample = (len(ended) // tenth + 1) * tenth
        elif time.monotonic() - last_progress > 60:
            break  # stuck: report what did not end
    return ended


async def _ended(store: RedisSagaStore, saga_ids: list[str]) -> dict[str, Ended]:
    """What the bench keeps of sagas that ended, read from their stored states as plain
    JSON: the bench's own reading should cost the system it measures next to nothing."""
    states = await store.raw_states(saga_ids)
    ended = {}
    for saga_id, raw in zip(saga_ids, states, strict=True):
        if raw is None:
            continue  # trimmed already (a retention shorter than the run)
        state = json.loads(raw)
        began = datetime.fromisoformat(state["created_at"])
        ended[saga_id] = Ended(
            status=state["status"],
            latency_ms=(datetime.fromisoformat(state["updated_at"]) - began).total_seconds() * 1000,
            # Snapshots leave fields at their defaults (no attempts: 0) out.
            messages=sum(
                2 * (s.get("attempts", 0) + s.get("compensation_attempts", 0))
                for s in state["steps"]
            ),
        )
    return ended


async def _info(redis: AnyRedis, section: str) -> list[dict[str, Any]]:
    """An INFO section of one Redis, or of each primary of a Redis Cluster (whose client
    would otherwise ask one node)."""
    if isinstance(redis, RedisCluster):
        return list((await redis.info(section, target_nodes=RedisCluster.PRIMARIES)).values())
    return [await redis.info(section)]


@dataclass(frozen=True)
class RedisFigures:
    """What Redis (each primary of a cluster, summed) says of its own work so far:
    commands run, by name, and CPU seconds."""

    commands: int
    calls: dict[str, int]
    cpu_seconds: float
    script_usec: int  # time running scripts

    def calls_per_saga(self, before: "RedisFigures", sagas: int) -> dict[str, float]:
        """Calls of each command since `before`, per saga, most first (none left out)."""
        calls = {name: n - before.calls.get(name, 0) for name, n in self.calls.items()}
        ranked = sorted(((n, name) for name, n in calls.items() if n > 0), reverse=True)
        return {name: round(n / sagas, 2) for n, name in ranked}


async def _redis_figures(redis: AnyRedis) -> RedisFigures:
    stats, commandstats, cpu = (
        await _info(redis, "stats"),
        await _info(redis, "commandstats"),
        await _info(redis, "cpu"),
    )
    calls: dict[str, int] = {}
    for node in commandstats:
        for name, figures in node.items():
            calls[name.removeprefix("cmdstat_")] = calls.get(
                name.removeprefix("cmdstat_"), 0
            ) + int(figures["calls"])
    return RedisFigures(
        commands=sum(int(node["total_commands_processed"]) for node in stats),
        calls=calls,
        cpu_seconds=sum(float(n["used_cpu_user"]) + float(n["used_cpu_sys"]) for n in cpu),
        # A script's time holds its inner commands' (counted under their own names too).
        script_usec=sum(
            int(figures["usec"])
            for node in commandstats
            for name, figures in node.items()
            if name.startswith(("cmdstat_eval", "cmdstat_fcall"))
        ),
    )


def _processes(config: Settings, children: dict[str, subprocess.Popen[bytes]]) -> dict[str, int]:
    """The processes to measure: this one, the workers, and the servers if they run here."""
    processes = {"bench": os.getpid(), **{name: c.pid for name, c in children.items()}}
    # A Redis Cluster's nodes are measured each, as "redis <port>" (the URL names them).
    if is_cluster_url(config.redis_url):
        redis_nodes = cluster_nodes(config.redis_url)
    else:
        url = urlsplit(config.redis_url)
        redis_nodes = [(url.hostname or "localhost", url.port or 6379)]
    label = {port: "redis" if len(redis_nodes) == 1 else f"redis {port}" for _, port in redis_nodes}
    rabbitmq_hosts = {urlsplit(url).hostname for url in node_urls(config.rabbitmq_url)}
    local = {host for host, _ in redis_nodes} | rabbitmq_hosts
    if not local <= {"127.0.0.1", "localhost", "::1"}:
        return processes
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            name = (entry / "comm").read_text().strip()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        # One node: the one RabbitMQ here (several nodes, a cluster's: not told apart
        # from other nodes on the machine, so not measured).
        if name == "beam.smp" and "," not in config.rabbitmq_url:
            processes.setdefault("rabbitmq", int(entry.name))
        elif name == "redis-server":
            port = _listening_port(command)
            if port in label:
                processes.setdefault(label[port], int(entry.name))
    return processes


def _listening_port(title: str) -> int | None:
    """The port of a redis-server by its process title ("redis-server HOST:PORT", with
    " [cluster]" on a cluster node)."""
    words = title.split()
    port = words[1].rpartition(":")[2] if len(words) > 1 else ""
    return int(port) if port.isdigit() else None


def _cpu(processes: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) of each process so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = {}
    for name, pid in processes.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu[name] = (int(fields[11]) + int(fields[12])) / ticks
    return cpu


def _rss_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    kb = next(
        (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0
    )
    return round(kb / 1024, 1)


async def _sample(
    redis: AnyRedis, keyspace: Keyspace, processes: dict[str, int], done: int
) -> Sample:
    """Redis's memory and the run's keys, and every process's resident set, now."""
    memory = sum(int(info["used_memory"]) for info in await _info(redis, "memory"))
    saga_prefixes = tuple(f"{bucket.prefix}:saga:" for bucket in keyspace.buckets)
    keys = saga_keys = 0
    async for key in redis.scan_iter(match=f"{keyspace.namespace}:*", count=1000):
        keys += 1
        saga_keys += key.startswith(saga_prefixes)
    rss = {name: mb for name, pid in processes.items() if (mb := _rss_mb(pid)) is not None}
    return Sample(
        sagas_done=done,
        redis_mb=round(memory / MB, 1),
        redis_keys=keys,
        saga_keys=saga_keys,
        rss_mb=rss,
    )


def percentile(values: list[float], p: int) -> float:
    """The p-th percentile (inclusive method); NaN of no values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]
