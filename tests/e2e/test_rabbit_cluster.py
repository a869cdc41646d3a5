"""The whole system on a 3-node RabbitMQ cluster: one node killed with -9 while hundreds of
sagas run; every process carries on on the nodes left, and nothing is lost or doubled."""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.shop import Customers, check_books, stocked_shop
from tests.e2e.system import System, replicated
from tests.nodes import RabbitCluster
from tests.waiting import eventually_sync

# Every saga accepted is terminal within this long after the node is killed.
TERMINAL_WITHIN = 180.0


@pytest.fixture
def on_rabbit_cluster(tmp_path: Path, rabbit_cluster: RabbitCluster) -> Iterator[System]:
    """Replicas on the session's RabbitMQ cluster, given every node's URL. A quorum queue
    may refuse publishes (nacks) for tens of seconds while its members elect a leader
    without the killed node, longer on a busy machine (47 s in one CI run; in another,
    with two test workers sharing the cores, over 90 s). So steps time out after the default 10 s,
    not the fault tests' 2 s, and a compensation is tried 20 times, not 5: a saga that
    gives up a step is undone once the broker takes its commands again, rather than
    ending `failed` for want of a broker (that is the replay's case, tested elsewhere)."""
    settings = {"SAGA_STEP_TIMEOUT": "10", "SAGA_COMPENSATION_MAX_ATTEMPTS": "20"}
    with replicated(tmp_path, rabbitmq_url=rabbit_cluster.url, settings=settings) as running:
        yield running


@pytest.mark.slow
def test_a_rabbitmq_node_killed_mid_run_loses_no_saga_and_doubles_no_effect(
    on_rabbit_cluster: System, rabbit_cluster: RabbitCluster
) -> None:
    system = on_rabbit_cluster
    shop = stocked_shop(system, apples=250, balance="1000.00")
    victim = rabbit_cluster.busiest()  # the node most of the processes are connected to
    try:
        with Customers(shop, upto=300) as customers:
            eventually_sync(
                lambda: len(customers.accepted),
                until=lambda n: n >= 100,
                what="100 orders accepted",
                within=60,
            )
            victim.kill()  # kill -9, mid-run: its connections and queue members go with it
            killed_at = time.monotonic()
            customers.wait_until_done(within=120)
        sagas = [
            system.wait_terminal(
                shop.token, s, within=max(1, killed_at + TERMINAL_WITHIN - time.monotonic())
            )
            for s in customers.accepted
        ]
        statuses = [s["status"] for s in sagas]
        print(  # shown with pytest -s: what the run went through
            f"cluster: {len(sagas)} sagas, {statuses.count('completed')} completed, "
            f"{statuses.count('compensated')} compensated, refused {customers.refused}, "
            f"unanswered {customers.unanswered}, all terminal "
            f"{time.monotonic() - killed_at:.1f}s after the kill"
        )
        assert len(sagas) == 300
        assert "failed" not in statuses
        check_books(shop, sagas, stock=250, balance="1000.00")
        customers.check_no_other_saga_started()
        system.check_alive()  # every process rode it out: none exited
    finally:
        victim.start()  # it rejoins the cluster, for the tests after this one
