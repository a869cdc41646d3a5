"""The whole system on a Redis Cluster (SAGA_REDIS_URL=redis+cluster://...): orders placed
through the front door all end, the books balance, and the sagas' keys are spread over
every primary."""

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.shop import check_books, stocked_shop
from tests.e2e.system import System, running_system
from tests.nodes import RedisClusterNodes
from tests.servers import rabbitmq_or_skip

ORDERS = 50


async def _rabbitmq_or_skip() -> None:
    connection = await rabbitmq_or_skip()
    await connection.close()


@pytest.fixture
def on_cluster(tmp_path: Path, redis_cluster: RedisClusterNodes) -> Iterator[System]:
    """The system on the shared Redis Cluster (which this test does not fault)."""
    asyncio.run(_rabbitmq_or_skip())
    # 64 buckets: every primary holds some (16 would leave one out in 1 run of 200).
    settings = {"SAGA_REDIS_BUCKETS": "64"}
    with running_system(tmp_path, redis_url=redis_cluster.url, settings=settings) as running:
        yield running


def test_orders_on_a_redis_cluster_all_end_and_their_sagas_are_on_every_primary(
    on_cluster: System, redis_cluster: RedisClusterNodes
) -> None:
    system = on_cluster
    # 60 apples and money for 40: the last orders run out of money and compensate.
    shop = stocked_shop(system, apples=60, balance="200.00")
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(lambda _: shop.place([("apple", 1)]), range(ORDERS)))
    sagas = [system.wait_terminal(shop.token, s, within=60) for s in ids]
    statuses = [s["status"] for s in sagas]
    assert statuses.count("completed") == 40, statuses
    assert {s["reason"] for s in sagas if s["status"] == "compensated"} == {"insufficient_funds"}
    check_books(shop, sagas, stock=60, balance="200.00")

    primaries = redis_cluster.primary_nodes()
    assert len(primaries) == redis_cluster.primaries
    # A saga's own keys (state, events, ...) are in its bucket: <ns>:{<ns>/<bucket>}:saga:...
    pattern = f"{system.namespace}:{{{system.namespace}/*}}:saga:*"
    per_primary = {p.port: p.count_keys(pattern) for p in primaries}
    assert all(per_primary.values()), per_primary
    system.check_alive()
    # A command counting other buckets than the namespace's says so, rather than list
    # a quarter of its sagas.
    mistyped = system.cli("list", check=False, SAGA_REDIS_BUCKETS="16")
    assert mistyped.returncode != 0
    assert mistyped.stderr.strip().splitlines() == [
        f"saga: error: namespace {system.namespace!r} keeps its sagas in 64 buckets, and this "
        "process would look in 16: set SAGA_REDIS_BUCKETS=64"
    ]
