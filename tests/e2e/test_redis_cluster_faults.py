"""A Redis Cluster primary killed with -9 while hundreds of sagas run: its replica takes
over, and with SAGA_REDIS_WAIT_REPLICAS=1 nothing is lost, nothing done twice, and every
saga ends."""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.shop import Customers, check_books, stocked_shop
from tests.e2e.system import System, running_system
from tests.nodes import RedisClusterNodes
from tests.waiting import eventually_sync

ORDERS = 300


@pytest.fixture
def on_own_cluster(tmp_path: Path, own_redis_cluster: RedisClusterNodes) -> Iterator[System]:
    """Two of each process on a Redis Cluster of the test's own, appends waiting for a
    replica."""
    settings = {
        "SAGA_STEP_TIMEOUT": "2",
        "SAGA_RETRY_BACKOFF": "0.2",
        "SAGA_RELAY_GRACE": "1",
        "SAGA_REDIS_WAIT_REPLICAS": "1",
        "SAGA_REDIS_WAIT_TIMEOUT": "1",
    }
    with running_system(
        tmp_path, replicas=2, settings=settings, redis_url=own_redis_cluster.url
    ) as running:
        yield running


@pytest.mark.slow
def test_a_redis_primary_killed_mid_run_loses_no_saga_and_doubles_no_effect(
    on_own_cluster: System, own_redis_cluster: RedisClusterNodes
) -> None:
    system, cluster = on_own_cluster, own_redis_cluster
    shop = stocked_shop(system, apples=250, balance="1000.00")
    with Customers(shop, upto=ORDERS) as customers:
        eventually_sync(
            lambda: len(customers.accepted), until=lambda n: n >= 60, what="60 orders", within=60
        )
        victim = max(cluster.primary_nodes(), key=lambda n: n.count_keys(f"{system.namespace}:*"))
        victim.kill()  # kill -9: its replica is promoted after the node timeout (2 s)
        fault = time.monotonic()
        cluster.wait_healthy(within=60)
        customers.wait_until_done(within=180)

    accepted, refused = customers.accepted, customers.refused
    assert len(accepted) >= 200, f"only {len(accepted)} of {ORDERS} orders were accepted"
    sagas = [
        system.wait_terminal(shop.token, s, within=max(1, fault + 180 - time.monotonic()))
        for s in accepted
    ]
    statuses = [s["status"] for s in sagas]
    print(  # shown with pytest -s: what the run went through
        f"redis failover: {len(accepted)} accepted, {len(refused)} refused {set(refused)}, "
        f"{customers.unanswered} unanswered, "
        f"{statuses.count('completed')} completed, {statuses.count('compensated')} compensated"
    )
    assert "failed" not in statuses
    check_books(shop, sagas, stock=250, balance="1000.00")
    customers.check_no_other_saga_started()
    # And the sagas were spread over every primary (the promoted replica among them).
    primaries = cluster.primary_nodes()
    assert len(primaries) == 3
    assert all(n.count_keys(f"{system.namespace}:*") for n in primaries)
