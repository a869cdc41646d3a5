"""A Redis Cluster primary killed with -9 while hundreds of sagas run: its replica takes
over, and with SAGA_REDIS_WAIT_REPLICAS=1 nothing is lost, nothing done twice, and every
saga ends."""

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.shop import check_books
from tests.e2e.system import System, running_system
from tests.e2e.test_chaos import stocked_shop
from tests.nodes import RedisClusterNodes

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
    accepted: list[str] = []
    refused: list[int] = []
    stop = threading.Event()

    def customers() -> None:
        with httpx.Client(timeout=10) as client:
            for _ in range(ORDERS):
                if stop.is_set():
                    return
                try:
                    response = client.post(
                        f"{system.api}/orders/create_order",
                        json=shop.body([("apple", 1)]),
                        headers={"Authorization": f"Bearer {shop.token}"},
                    )
                except httpx.HTTPError:
                    refused.append(0)
                    continue
                if response.status_code == 202:
                    accepted.append(response.json()["saga_id"])
                else:
                    refused.append(response.status_code)
                time.sleep(0.02)

    placing = threading.Thread(target=customers)
    placing.start()
    try:
        while len(accepted) < 60 and placing.is_alive():
            time.sleep(0.1)
        victim = max(cluster.primary_nodes(), key=lambda n: n.count_keys(f"{system.namespace}:*"))
        victim.kill()  # kill -9: its replica is promoted after the node timeout (2 s)
        fault = time.monotonic()
        cluster.wait_healthy(within=60)
        placing.join(timeout=180)
    finally:
        stop.set()
        placing.join(timeout=30)

    assert len(accepted) >= 200, f"only {len(accepted)} of {ORDERS} orders were accepted"
    sagas = [
        system.wait_terminal(shop.token, s, within=max(1, fault + 180 - time.monotonic()))
        for s in accepted
    ]
    statuses = [s["status"] for s in sagas]
    print(  # shown with pytest -s: what the run went through
        f"redis failover: {len(accepted)} accepted, {len(refused)} refused {set(refused)}, "
        f"{statuses.count('completed')} completed, {statuses.count('compensated')} compensated"
    )
    assert "failed" not in statuses
    check_books(shop, sagas, stock=250, balance="1000.00")
    # An order answered other than 202 started no saga: every saga is one accepted.
    listed = {s["saga_id"] for s in system.cli_json("list", "--limit", "10000")}
    assert listed == set(accepted)
    # And the sagas were spread over every primary (the promoted replica among them).
    primaries = cluster.primary_nodes()
    assert len(primaries) == 3
    assert all(n.count_keys(f"{system.namespace}:*") for n in primaries)
