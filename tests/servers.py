"""Where the test servers are, and what to do when one is missing: skip, or fail under CI."""

import asyncio
import os
import pathlib
import random
import socket
import subprocess
import uuid
from collections.abc import Callable
from typing import NoReturn

import aio_pika
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from contracts.topology import Topology
from saga.amqp_nodes import connect_pika
from saga.connections import AnyRedis, redis_client
from saga.namespaces import delete_keys
from saga.rabbit import delete_topology
from saga.registry import participants_key
from saga.settings import Settings
from services.messages import CATALOGUE

# The shop's participants, whose queues the shop's tests use.
SHOP_PARTICIPANTS = tuple(CATALOGUE.participants)

REDIS_URL = os.environ.get("SAGA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RABBITMQ_URL = os.environ.get("SAGA_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
# The console's browser tests: Debian's Chromium and its driver, and where the pictures
# of the pages they visit go (git-ignored).
CHROMIUM = os.environ.get("SAGA_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SAGA_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
CONSOLE_ARTIFACTS = os.environ.get("SAGA_TEST_CONSOLE_ARTIFACTS", "artifacts/console")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str, url: str, error: BaseException) -> None:
    """Skip the test locally; under CI=true a missing server fails it."""
    absent(f"{what} is not reachable at {url} ({type(error).__name__}: {error})", "start it")


def absent(message: str, remedy: str = "install it") -> NoReturn:
    """Skip the test locally for want of `message`'s thing; under CI=true fail it."""
    if IN_CI:
        pytest.fail(f"{message}; CI=true requires it", pytrace=False)
    pytest.skip(f"{message}; {remedy} to run this test")


async def redis_or_skip() -> Redis:
    redis = Redis.from_url(REDIS_URL, decode_responses=True, socket_connect_timeout=2)
    try:
        await redis.ping()
    except Exception as exc:
        await redis.aclose()
        missing("Redis", REDIS_URL, exc)
    return redis


def url_of(redis: AnyRedis) -> str:
    """The SAGA_REDIS_URL that reaches what this test client reaches (the real Redis, or
    a cluster by its nodes), for a process the test starts."""
    if isinstance(redis, RedisCluster):
        return "redis+cluster://" + ",".join(f"{n.host}:{n.port}" for n in redis.get_nodes())
    return REDIS_URL


async def rabbitmq_or_skip() -> aio_pika.abc.AbstractConnection:
    try:
        return await aio_pika.connect(RABBITMQ_URL, timeout=3)
    except Exception as exc:
        missing("RabbitMQ", RABBITMQ_URL, exc)
        raise  # unreachable: missing() skips or fails


_handed_out: set[int] = set()


def _ephemeral_range() -> range:
    """The ports the kernel hands out to outgoing connections (and for port 0)."""
    try:
        text = pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        low, high = map(int, text.split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


# Ports for servers a test starts, below the kernel's ephemeral ones: a port found free
# there cannot be taken, before the server binds it, by some process's outgoing
# connection (which a port the kernel gave for port 0 can: "Address already in use").
_EPHEMERAL = _ephemeral_range()
_ALL_PORTS = range(max(1024, _EPHEMERAL.start - 12_000), _EPHEMERAL.start)
if len(_ALL_PORTS) < 1_000:  # a machine whose ephemeral range starts low: above it instead
    _ALL_PORTS = range(_EPHEMERAL.stop, 65_536)


def _share(ports: range) -> range:
    """This test process's share of `ports`: pytest-xdist's workers (gw0, gw1, …) each
    pick in a slice of their own, so two cannot hand out the same port."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or workers < 2:
        return ports
    size = len(ports) // workers
    # A worker that replaces one that crashed is numbered on (gw2 of two): it takes the
    # slice of the one it replaces, whose servers died with it.
    first = ports.start + int(worker.removeprefix("gw")) % workers * size
    return range(first, first + size)


_PORTS = _share(_ALL_PORTS)


def free_port() -> int:
    """A port nobody listens on, outside the ephemeral range, and never one handed out
    before in this run."""
    return free_ports(1)


def free_ports(count: int) -> int:
    """The first of `count` consecutive free ports, outside the ephemeral range, none
    handed out before in this run."""
    for _ in range(10_000):
        first = random.randrange(_PORTS.start, _PORTS.stop - count)
        run = range(first, first + count)
        if any(port in _handed_out for port in run) or not all(map(_bindable, run)):
            continue
        _handed_out.update(run)
        return first
    raise RuntimeError(f"no {count} free consecutive ports in {_PORTS}")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def fresh_namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


async def drop_namespace(
    redis: AnyRedis | None, namespace: str, *, rabbitmq_url: str = RABBITMQ_URL
) -> None:
    """Delete every Redis key and AMQP queue/exchange of a test namespace (the queues of
    participants its definitions named too)."""
    topology = Topology(namespace, SHOP_PARTICIPANTS)
    if redis is not None:
        named = [str(p) for p in await redis.smembers(participants_key(redis, namespace))]
        topology = topology.with_participants(named)
        await delete_keys(redis, namespace)
    try:
        connection = await connect_pika(rabbitmq_url, timeout=3)
    except Exception:
        return
    async with connection:
        await delete_topology(await connection.channel(), topology)


def forget_namespace(
    namespace: str, *, redis_url: str = REDIS_URL, rabbitmq_url: str = RABBITMQ_URL
) -> None:
    """drop_namespace for synchronous tests."""

    async def drop() -> None:
        redis = redis_client(Settings(redis_url=redis_url))  # one Redis, or a cluster
        try:
            await drop_namespace(redis, namespace, rabbitmq_url=rabbitmq_url)
        finally:
            await redis.aclose()

    asyncio.run(drop())


# Commands that stop or wipe a broker: on the shared one they would break every other
# test run on the machine.
FAULTS = frozenset({"stop", "stop_app", "shutdown", "reset", "force_reset"})


def rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `rabbitmqctl <args>` on the shared broker: to look or to close a client's
    connection, never to stop it (a fault test faults a node of its own: tests/nodes.py)."""
    if args and args[0] in FAULTS:
        raise ValueError(
            f"rabbitmqctl {args[0]} on the shared broker would stop it for everyone; "
            "fault a node of the test's own (tests/nodes.py: RabbitNode)"
        )
    return subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=60, check=True
    )


def close_connections_named(
    name: str, ctl: Callable[..., subprocess.CompletedProcess[str]] = rabbitmqctl
) -> int:
    """Make the broker close every client connection whose connection_name is `name`
    (as a network cut or an operator would); how many it closed. `ctl` runs rabbitmqctl
    on the broker meant: the shared one, or a test's own node (`RabbitNode.ctl`)."""
    # The table format gives the pid as close_connection takes it (JSON's does not).
    listed = ctl("list_connections", "pid", "client_properties", "-s")
    wanted = f'{{"connection_name","{name}"}}'
    closed = 0
    for line in listed.stdout.splitlines():
        pid, _, properties = line.partition("\t")
        if wanted in properties:
            ctl("close_connection", pid, "closed by a test")
            closed += 1
    return closed
