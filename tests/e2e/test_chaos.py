"""Replicas, and chaos: processes killed with -9 every second and a broker restart while
hundreds of sagas run; afterwards every saga ends and the books balance."""

import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.shop import Customers, check_books, stocked_shop
from tests.e2e.system import System, replicated
from tests.nodes import RabbitNode


@pytest.fixture
def on_shared_servers(tmp_path: Path) -> Iterator[System]:
    """Replicas on the shared servers (this test faults neither)."""
    with replicated(tmp_path) as running:
        yield running


@pytest.fixture
def on_own_rabbit(tmp_path: Path, own_rabbit: RabbitNode) -> Iterator[System]:
    """Replicas on a RabbitMQ node of the test's own, to restart."""
    with replicated(tmp_path, rabbitmq_url=own_rabbit.url) as running:
        yield running


def test_replicas_share_the_work_and_get_every_saga_right(on_shared_servers: System) -> None:
    system = on_shared_servers
    # 30 apples and money for 25: some orders run out of money, some out of stock.
    shop = stocked_shop(system, apples=30, balance="125.00")
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(lambda _: shop.place([("apple", 1)]), range(40)))
    sagas = [system.wait_terminal(shop.token, s, within=60) for s in ids]
    statuses = [s["status"] for s in sagas]
    assert statuses.count("completed") == 25
    reasons = {s["reason"] for s in sagas if s["status"] == "compensated"}
    assert reasons <= {"insufficient_funds", "insufficient_stock"}
    check_books(shop, sagas, stock=30, balance="125.00")
    system.check_alive()


@pytest.mark.slow
def test_chaos_kill_minus_nine_and_a_broker_restart(
    on_own_rabbit: System, own_rabbit: RabbitNode
) -> None:
    system = on_own_rabbit
    shop = stocked_shop(system, apples=250, balance="1000.00")
    rng = random.Random(7)
    started = time.monotonic()
    broker_restarted = False
    kills = 0
    with Customers(shop, upto=300) as customers:
        while time.monotonic() - started < 20:
            time.sleep(rng.uniform(0.7, 1.3))
            victim = rng.choice(system.workers)
            if system.processes[victim].poll() is None:
                system.kill(victim)  # kill -9
                kills += 1
            for name in system.workers:
                if name != victim and system.processes[name].poll() is not None:
                    system.restart(name)
            if not broker_restarted and time.monotonic() - started > 8:
                own_rabbit.stop_app()
                time.sleep(2)  # the outage: sagas go on being accepted meanwhile
                own_rabbit.start_app()
                broker_restarted = True
    for name in system.workers:
        if system.processes[name].poll() is not None:
            system.restart(name)

    accepted = customers.accepted
    assert len(accepted) >= 100, f"only {len(accepted)} orders were accepted"
    deadline = time.monotonic() + 30
    sagas = [
        system.wait_terminal(shop.token, s, within=max(1, deadline - time.monotonic()))
        for s in accepted
    ]
    statuses = [s["status"] for s in sagas]
    print(  # shown with pytest -s: what the run went through
        f"chaos: {len(accepted)} sagas, {statuses.count('completed')} completed, "
        f"{statuses.count('compensated')} compensated, kills {kills}"
    )
    assert "failed" not in statuses
    check_books(shop, sagas, stock=250, balance="1000.00")
