"""The examples run: their HTTP services as processes, their definitions applied with
the CLI, their sagas started over HTTP, on the real servers."""

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.shop import Shop, open_shop
from tests.e2e.system import System, free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def serve(example: str) -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "services.py"), example, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"example services did not start: {process.stderr}") from None
            time.sleep(0.1)
    try:
        yield port
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def fanout_port() -> Iterator[int]:
    yield from serve("fanout")


@pytest.fixture(scope="module")
def order_port() -> Iterator[int]:
    yield from serve("order_processing")


def apply(system: System, document: Path, port: int, tmp: Path) -> None:
    """Apply an example's definition with its services on `port` (the file says 870x)."""
    data = yaml.safe_load(document.read_text())
    for participant in data["participants"].values():
        url = participant["http"]["url"]
        participant["http"]["url"] = url.replace(url.split("/")[2], f"127.0.0.1:{port}")
    moved = tmp / document.name
    moved.write_text(yaml.safe_dump(data))
    system.cli("definitions", "apply", str(moved))


def start(system: System, shop: Shop, saga_type: str, saga_input: dict[str, Any]) -> str:
    response = httpx.post(
        f"{system.api}/sagas",
        json={"type": saga_type, "input": saga_input},
        headers={"Authorization": f"Bearer {shop.token}"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["saga_id"])


def tasks(port: int, service: str) -> dict[str, Any]:
    return dict(httpx.get(f"http://127.0.0.1:{port}/{service}/tasks", timeout=5).json())


def test_the_fan_out_computes_three_figures_at_once_or_discards_them_all(
    system: System, fanout_port: int, tmp_path: Path
) -> None:
    apply(system, EXAMPLES / "fanout" / "account-review.yaml", fanout_port, tmp_path)
    shop = open_shop(system)
    done = system.wait_terminal(
        shop.token, start(system, shop, "account-review", {"account": "acme", "period": "2026-11"})
    )
    assert done["status"] == "completed"
    assert set(done["summary"]) == {"revenue", "rebates", "specialty"}
    assert all(isinstance(v, int) for v in done["summary"].values())
    undone = system.wait_terminal(
        shop.token,
        start(system, shop, "account-review", {"account": "unknown", "period": "2026-11"}),
    )
    assert undone["status"] == "compensated" and undone["reason"] == "no_specialty_data"
    assert [s["status"] for s in undone["steps"]] == ["compensated", "compensated", "failed"]
    for service in ("revenue", "rebates"):  # each service tracked its task, and its discard
        kinds = sorted(
            k.split(":")[-1] for k in tasks(fanout_port, service) if undone["saga_id"] in k
        )
        assert kinds == ["compensate", "execute"], service


def test_the_order_workflow_ships_invoices_and_notifies_or_undoes_it_all(
    system: System, order_port: int, tmp_path: Path
) -> None:
    apply(system, EXAMPLES / "order_processing" / "order-fulfilment.yaml", order_port, tmp_path)
    shop = open_shop(system)
    order = shop.body([("apple", 2)])
    saga_input = {
        "vendor": order["vendor_email"],
        "delivery_address": order["delivery_address"],
        "items": order["items"],
        "payment_method": "Credit Card",
        "phone": "+15550100",
    }
    done = system.wait_terminal(shop.token, start(system, shop, "order-fulfilment", saga_input))
    assert done["status"] == "completed", done
    assert [s["status"] for s in done["steps"]] == ["succeeded"] * 8
    assert done["summary"]["tracking"] == f"TRK-{done['summary']['order_id']}"
    sent = tasks(order_port, "notify")
    assert {body["sent"] for key, body in sent.items() if done["saga_id"] in key} == {
        "SendEmail",
        "SendSms",
    }
    undone = system.wait_terminal(
        shop.token,
        start(system, shop, "order-fulfilment", saga_input | {"delivery_address": "nowhere"}),
    )
    assert undone["status"] == "compensated" and undone["reason"] == "undeliverable"
    steps = {s["name"]: s["status"] for s in undone["steps"]}
    assert steps == {
        "reserve_stock": "compensated",
        "take_payment": "compensated",
        "create_order": "compensated",
        "book_shipment": "failed",
        "issue_invoice": "compensated",
        "confirm_stock": "pending",
        "email": "pending",
        "sms": "pending",
    }
    apple = shop.stock("apple")
    assert (apple["sold"], apple["reserved"], apple["available"]) == (2, 0, 8)
    assert shop.account()["balance"] == "90.00"  # one order of two apples at 5.00
