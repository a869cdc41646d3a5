"""Shared fixtures: real servers (skip locally, fail under CI=true), servers of a test's
own to fault, and fresh namespaces."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Final

import aio_pika
import pytest
from hypothesis import settings

from saga.connections import AnyRedis
from tests.nodes import (
    RabbitCluster,
    RabbitNode,
    RedisClusterNodes,
    RedisServer,
    cluster_client,
    running,
)
from tests.servers import drop_namespace, fresh_namespace, rabbitmq_or_skip, redis_or_skip

# Under CI=true Hypothesis runs its derandomized "ci" profile: the same examples every run.
# CI runs the property tests a second time with `--hypothesis-profile=random
# --hypothesis-seed=N` (a fresh N each run, printed), to draw what developers' machines draw.
settings.register_profile(
    "random", derandomize=False, database=None, deadline=None, print_blob=True
)


# Servers a test starts and faults (kills, restarts), or the session's RabbitMQ cluster.
_FAULTED: Final = frozenset({"own_redis", "own_rabbit", "own_redis_cluster", "rabbit_cluster"})


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's, which reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`--dist loadgroup`), the long fault tests, those on servers of
    their own and those on the session's RabbitMQ cluster run on one worker, one after
    another: the cluster starts once (20 to 35 s here, three Erlang nodes), and no two of
    them share the two cores. (A test that asks for the cluster through a parametrized
    fixture carries the mark on that parameter: tests/integration/test_transport_contract.py.)"""
    for item in items:
        if item.get_closest_marker("slow") or _FAULTED & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("heavy"))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """On a pytest-xdist worker, make sure the group held: the scheduler reads it from
    the suffix pytest-xdist puts on each node id, which some pytest releases drop
    (pytest-xdist#1386). Scattered, the fault tests would share the cores and time out
    now and then; each errors at its setup instead, saying why."""
    grouped = getattr(item.config.option, "loadgroup", False)  # set on workers by xdist
    nodeid = item.nodeid
    # The scheduler's own reading: a group is what follows an "@" after the parameters.
    suffixed = nodeid.rfind("@") > nodeid.rfind("]")
    if grouped and item.get_closest_marker("xdist_group") and not suffixed:
        pytest.fail(
            "the fault tests are not grouped on one worker (pytest-xdist's loadgroup with"
            " this pytest: pytest-xdist#1386); install the pinned pytest, or run with -n 0",
            pytrace=False,
        )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked `either_redis` (a module's `pytestmark`) that takes the `redis`
    fixture runs twice: on the real Redis and on the shared Redis Cluster."""
    if "redis" in metafunc.fixturenames and metafunc.definition.get_closest_marker("either_redis"):
        metafunc.parametrize("redis", ["redis", "cluster"], indirect=True)


@pytest.fixture
def namespace() -> str:
    """A namespace no other test or deployment uses."""
    return fresh_namespace()


@pytest.fixture
async def redis(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[AnyRedis]:
    """A client of the real Redis (or, parametrized "cluster", of the shared Redis
    Cluster, as the engine makes it from SAGA_REDIS_URL); the namespace's keys are
    deleted afterwards."""
    client: AnyRedis
    if getattr(request, "param", "redis") == "cluster":
        client = cluster_client(request.getfixturevalue("redis_cluster"))
    else:
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
    yield from running(RabbitNode(tmp_path / "rabbitmq"))


@pytest.fixture(scope="session")
def rabbit_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    """A 3-node RabbitMQ cluster of the test session's own, started once (about a
    minute); a test that kills a node starts it again."""
    yield from running(RabbitCluster(tmp_path_factory.mktemp("rabbitmq-cluster")))


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own, to crash and restart; stopped afterwards."""
    yield from running(RedisServer(tmp_path / "redis"))


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """A Redis Cluster of the suite's own (3 primaries, a replica each, on free loopback
    ports), started once for the tests that share it; they must not fault it."""
    yield from running(RedisClusterNodes(tmp_path_factory.mktemp("redis-cluster")))


@pytest.fixture
def own_redis_cluster(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    """A Redis Cluster of the test's own, to fault; stopped afterwards."""
    yield from running(RedisClusterNodes(tmp_path / "redis-cluster"))
