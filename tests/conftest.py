"""Shared fixtures: real servers (skip locally, fail under CI=true), servers of a test's
own to fault, and fresh namespaces."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import pytest
from hypothesis import settings
from redis.asyncio import Redis

from tests.nodes import RabbitCluster, RabbitNode, RedisServer
from tests.servers import drop_namespace, fresh_namespace, rabbitmq_or_skip, redis_or_skip

# Under CI=true Hypothesis runs its derandomized "ci" profile: the same examples every run.
# CI runs the property tests a second time with `--hypothesis-profile=random
# --hypothesis-seed=N` (a fresh N each run, printed), to draw what developers' machines draw.
settings.register_profile(
    "random", derandomize=False, database=None, deadline=None, print_blob=True
)


@pytest.fixture
def namespace() -> str:
    """A namespace no other test or deployment uses."""
    return fresh_namespace()


@pytest.fixture
async def redis(namespace: str) -> AsyncIterator[Redis]:
    """A client of the real Redis; the namespace's keys are deleted afterwards."""
    client = await redis_or_skip()
    try:
        yield client
    finally:
        await drop_namespace(client, namespace)
        await client.aclose()


@pytest.fixture
async def amqp(namespace: str) -> AsyncIterator[aio_pika.abc.AbstractConnection]:
    """A connection to the real RabbitMQ; the namespace's topology is deleted afterwards."""
    connection = await rabbitmq_or_skip()
    try:
        yield connection
    finally:
        await connection.close()
        await drop_namespace(None, namespace)


@pytest.fixture
def own_rabbit(tmp_path: Path) -> Iterator[RabbitNode]:
    """A RabbitMQ node of the test's own, to stop and start; stopped afterwards."""
    node = RabbitNode(tmp_path / "rabbitmq")
    try:
        node.start()
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def rabbit_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    """A 3-node RabbitMQ cluster of the test session's own, started once (about a
    minute); a test that kills a node starts it again."""
    cluster = RabbitCluster(tmp_path_factory.mktemp("rabbitmq-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own, to crash and restart; stopped afterwards."""
    server = RedisServer(tmp_path / "redis")
    try:
        server.start()
        yield server
    finally:
        server.stop()
