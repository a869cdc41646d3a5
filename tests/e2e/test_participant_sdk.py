"""The example participant written on the SDK, run with `saga participant run` as two
replicas, taking part in sagas beside the shop's services: as a user runs it."""

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest

from tests.e2e.shop import Shop, open_shop
from tests.e2e.system import System, log_lines
from tests.servers import free_port
from tests.waiting import eventually_sync

ROOT = Path(__file__).resolve().parents[2]
DEFINITION = ROOT / "examples" / "shipping" / "shipped-order.yaml"
TARGET = "examples.shipping.participant:carrier"
REPLICAS = ("carrier", "carrier-2")


async def _consumers(system: System, queue: str) -> int:
    async with await aio_pika.connect(system.rabbitmq_url) as connection:
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            return 0  # not declared yet
        return int(declared.declaration_result.consumer_count or 0)


@pytest.fixture(scope="module")
def carrier(system: System) -> Iterator[dict[str, int]]:
    """Two replicas of the example participant; their metrics ports."""
    ports = {name: free_port() for name in REPLICAS}
    for name in REPLICAS:
        system.spawn(
            name,
            "participant",
            "run",
            TARGET,
            "--metrics-port",
            str(ports[name]),
            env={**system.env, "PYTHONPATH": str(ROOT)},
        )
    queue = f"{system.namespace}.carrier"
    eventually_sync(
        lambda: (system.check_alive(), asyncio.run(_consumers(system, queue)))[1],
        until=lambda n: n == len(REPLICAS),
        within=30,
        what="both replicas consuming",
    )
    system.cli("definitions", "apply", str(DEFINITION))
    try:
        yield ports
    finally:
        for name in REPLICAS:
            if name in system.processes:
                system.kill(name, signal.SIGTERM)
                del system.processes[name]


def start(system: System, shop: Shop, saga_input: dict[str, Any]) -> str:
    response = httpx.post(
        f"{system.api}/sagas",
        json={"type": "shipped-order", "input": saga_input},
        headers={"Authorization": f"Bearer {shop.token}"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["saga_id"])


def order_input(shop: Shop, **changes: Any) -> dict[str, Any]:
    order = shop.body([("apple", 2)])
    return {
        "vendor": order["vendor_email"],
        "delivery_address": order["delivery_address"],
        "items": order["items"],
        "payment_method": "Credit Card",
    } | changes


def test_the_example_participant_ships_orders_or_refuses_and_everything_is_undone(
    system: System, carrier: dict[str, int]
) -> None:
    shop = open_shop(system)
    done = [
        system.wait_terminal(shop.token, saga_id)
        for saga_id in [start(system, shop, order_input(shop)) for _ in range(3)]
    ]
    for saga in done:
        assert saga["status"] == "completed", saga
        assert [s["status"] for s in saga["steps"]] == ["succeeded"] * 5
        assert str(saga["summary"]["tracking"]).startswith("TRK-")
    assert len({s["summary"]["tracking"] for s in done}) == 3
    undone = system.wait_terminal(
        shop.token, start(system, shop, order_input(shop, delivery_address="nowhere"))
    )
    assert undone["status"] == "compensated" and undone["reason"] == "undeliverable"
    assert {s["name"]: s["status"] for s in undone["steps"]} == {
        "reserve_stock": "compensated",
        "take_payment": "compensated",
        "create_order": "compensated",
        "ship": "failed",
        "confirm_stock": "pending",
    }
    apple = shop.stock("apple")
    assert (apple["sold"], apple["reserved"], apple["available"]) == (6, 0, 4)
    assert shop.account()["balance"] == "70.00"  # three orders of two apples at 5.00
    # Its log is JSON, each command's line bound to its saga, key and trace.
    lines = [
        line
        for name in REPLICAS
        for line in log_lines(system.logs / f"{name}.log", done[0]["saga_id"])
        if line.get("event") == "command handled"
    ]
    assert [(line["command"], line["outcome"], line["step"]) for line in lines] == [
        ("ShipOrder", "Shipped", "ship")
    ]
    assert lines[0]["idempotency_key"] == f"{done[0]['saga_id']}:ship:execute"
    assert lines[0]["trace_id"]
    # And its metrics, on the port it was given.
    shipped = (
        'saga_commands_handled_total{command="ShipOrder",participant="carrier",reply="Shipped"}'
    )
    counts = [
        line.split()[-1]
        for name in REPLICAS
        for line in httpx.get(
            f"http://127.0.0.1:{carrier[name]}/metrics", timeout=5
        ).text.splitlines()
        if line.startswith(shipped)
    ]
    assert sum(float(c) for c in counts) == 3


def test_sigterm_stops_a_replica_cleanly_and_the_other_carries_on(
    system: System, carrier: dict[str, int]
) -> None:
    system.kill("carrier-2", signal.SIGTERM)
    assert system.processes.pop("carrier-2").returncode == 0
    stopped = [
        json.loads(line)
        for line in (system.logs / "carrier-2.log").read_text().splitlines()
        if line.startswith("{")
    ]
    assert stopped[-1]["event"] == "participant stopped"
    shop = open_shop(system)
    saga = system.wait_terminal(shop.token, start(system, shop, order_input(shop)))
    assert saga["status"] == "completed", saga


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("examples.shipping.participant", "is not MODULE:ATTRIBUTE"),
        ("examples.nowhere:carrier", "no module 'examples.nowhere'"),
        ("examples.shipping.participant:nobody", "has no attribute 'nobody'"),
        ("examples.shipping.participant:ShipOrder", "is the class ShipOrder, not a Participant"),
    ],
)
def test_a_bad_target_is_one_line_and_exit_2(target: str, says: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "saga", "participant", "run", target],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("saga: error: ")
    assert says in result.stderr
