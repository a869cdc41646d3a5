"""The engine runs with no extension (SAGA_EXTENSIONS empty): it starts, takes a user's
definition naming a participant it has no contracts for, and runs sagas against that
participant; and the shop's route and commands are not there."""

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.courier import DELIVERY, Courier, running
from tests.e2e.system import TERMINAL, System
from tests.servers import forget_namespace, fresh_namespace, rabbitmq_or_skip, redis_or_skip

ALONE = {"SAGA_EXTENSIONS": ""}


async def _servers_or_skip() -> None:
    redis = await redis_or_skip()
    await redis.aclose()
    connection = await rabbitmq_or_skip()
    await connection.close()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[System]:
    """auth, api and orchestrator with no extension loaded, on a fresh namespace."""
    asyncio.run(_servers_or_skip())
    system = System(namespace=fresh_namespace(), logs=tmp_path, settings=ALONE)
    try:
        system.spawn("auth", "auth", "--port", str(system.auth_port))
        system.spawn("api", "api", "--port", str(system.api_port))
        system.spawn("orchestrator", "orchestrator")
        deadline = time.monotonic() + 30
        while True:
            system.check_alive()
            try:
                if httpx.get(f"{system.api}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"the engine did not start; logs in {tmp_path}"
            time.sleep(0.1)
        yield system
    finally:
        codes = system.stop()
        forget_namespace(system.namespace)
    assert codes == {"auth": 0, "api": 0, "orchestrator": 0}, codes


def _show(engine: System, saga_id: str, within: float = 20) -> dict[str, object]:
    deadline = time.monotonic() + within
    while True:
        shown = engine.cli_json("show", saga_id)
        if shown["status"] in TERMINAL or time.monotonic() > deadline:
            return dict(shown)
        time.sleep(0.1)


def test_the_engine_alone_runs_a_users_saga(engine: System, tmp_path: Path) -> None:
    document = tmp_path / "delivery.json"
    document.write_text(json.dumps(DELIVERY))
    engine.cli("definitions", "apply", str(document))
    listed = engine.cli_json("definitions", "list")
    assert [d["name"] for d in listed] == ["delivery"]  # nothing built in: no extension
    with running(Courier(engine.namespace)):
        started = engine.cli_json(
            "start",
            "delivery",
            "--input",
            json.dumps({"address": "1 Main Street", "value": 400}),
            "--customer",
            "ann@example.com",
        )
        shown = _show(engine, started["saga_id"])
    assert shown["status"] == "completed", shown
    assert [s["status"] for s in shown["steps"]] == ["succeeded", "succeeded"]  # type: ignore[attr-defined]


def test_without_the_shop_its_route_and_commands_are_not_there(engine: System) -> None:
    engine.cli("auth", "add-user", "ann@example.com", "--password", "correct-horse")
    token = engine.token("ann@example.com")
    response = httpx.post(
        f"{engine.api}/orders/create_order",
        json={"vendor_email": "shop@example.com"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 404, response.text
    unknown = engine.cli("stock", "show", "apple", check=False)
    assert unknown.returncode == 2
    assert "No such command 'stock'" in unknown.stderr
    service = engine.cli("service", "stock", check=False)
    assert service.returncode == 2
    assert "'stock' is not a participant the loaded extensions ship (none)" in service.stderr
    # With the shop loaded, the same command is there.
    assert engine.cli("stock", "show", "apple", check=False, SAGA_EXTENSIONS="shop").stderr == (
        "saga: error: no product 'apple'\n"
    )
