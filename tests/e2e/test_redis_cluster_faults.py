"""A Redis Cluster primary killed with -9 while hundreds of orders come in: its replica
takes over, the old primary comes back as the new one's replica, and with
SAGA_REDIS_WAIT_REPLICAS=1 nothing is lost, nothing is done twice, and every saga ends."""

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.shop import Shop, check_books, stocked_shop
from tests.e2e.system import System, running_system
from tests.nodes import RedisClusterNodes

ORDERS = 300
WITHIN = 180.0  # every order answered and every saga ended this long after the fault


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
        "SAGA_REDIS_BUCKETS": "64",  # every primary holds some (16 might leave one out)
    }
    with running_system(
        tmp_path, replicas=2, settings=settings, redis_url=own_redis_cluster.url
    ) as running:
        yield running


class Customer(threading.Thread):
    """Places orders one after another, each under an Idempotency-Key of its own, asking
    again (same key, same body) after a 5xx or a lost connection, as a client should,
    until the order is answered 2xx or refused with a 4xx."""

    def __init__(self, system: System, shop: Shop, orders: int, give_up_at: list[float]) -> None:
        super().__init__()
        self.system, self.shop, self.orders, self.give_up_at = system, shop, orders, give_up_at
        self.sagas: list[str] = []
        self.refused: list[int] = []  # 4xx: the order was refused for good
        self.unanswered = 0  # still 5xx when time ran out
        self.retries = 0

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            for _ in range(self.orders):
                self._place(client, f"order-{uuid.uuid4().hex}")

    def _place(self, client: httpx.Client, key: str) -> None:
        body = self.shop.body([("apple", 1)])
        headers = {"Authorization": f"Bearer {self.shop.token}", "Idempotency-Key": key}
        while time.monotonic() < self.give_up_at[0]:
            try:
                response = client.post(
                    f"{self.system.api}/orders/create_order", json=body, headers=headers
                )
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code < 300:
                self.sagas.append(response.json()["saga_id"])
                return
            if response is not None and response.status_code < 500:
                self.refused.append(response.status_code)
                return
            self.retries += 1
            time.sleep(0.2)
        self.unanswered += 1


@pytest.mark.slow
def test_a_redis_primary_killed_mid_run_loses_no_saga_and_doubles_no_effect(
    on_own_cluster: System, own_redis_cluster: RedisClusterNodes
) -> None:
    system, cluster = on_own_cluster, own_redis_cluster
    shop = stocked_shop(system, apples=250, balance="1000.00")
    give_up_at = [time.monotonic() + 600]
    customers = [Customer(system, shop, ORDERS // 2, give_up_at) for _ in range(2)]
    for customer in customers:
        customer.start()
    while sum(len(c.sagas) for c in customers) < 60 and any(c.is_alive() for c in customers):
        time.sleep(0.05)
    victim = max(cluster.primary_nodes(), key=lambda n: n.count_keys(f"{system.namespace}:*"))
    victim.kill()  # kill -9: its replica is promoted after the node timeout (2 s)
    fault = time.monotonic()
    give_up_at[0] = fault + WITHIN
    cluster.wait_healthy(within=60)
    # Until the old primary is back, as the new one's replica, the shard has no replica
    # to confirm an append: its sagas wait (and their orders are answered 503).
    time.sleep(3)
    victim.start()
    cluster.wait_replicated(within=60)
    for customer in customers:
        customer.join(timeout=max(1, fault + WITHIN - time.monotonic()))

    placed = [s for c in customers for s in c.sagas]
    print(  # shown with pytest -s: what the run went through
        f"redis failover: {len(placed)} orders accepted after "
        f"{sum(c.retries for c in customers)} retries"
    )
    assert [c.refused for c in customers] == [[], []]
    assert sum(c.unanswered for c in customers) == 0
    assert len(placed) == ORDERS and len(set(placed)) == ORDERS  # one saga an order
    sagas = [
        system.wait_terminal(shop.token, s, within=max(1, fault + WITHIN - time.monotonic()))
        for s in placed
    ]
    statuses = [s["status"] for s in sagas]
    assert "failed" not in statuses
    check_books(shop, sagas, stock=250, balance="1000.00")
    # No order started a saga it was not answered with (none orphaned by a 503).
    listed = {s["saga_id"] for s in system.cli_json("list", "--limit", "10000")}
    assert listed == set(placed)
    # And the sagas were spread over every primary (the promoted replica among them).
    primaries = cluster.primary_nodes()
    assert len(primaries) == 3
    assert all(n.count_keys(f"{system.namespace}:*") for n in primaries)
