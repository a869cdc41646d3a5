"""Every process rides out a RabbitMQ restart and a Redis restart, and resumes by itself."""

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.shop import check_books, open_shop
from tests.e2e.system import System, running_system
from tests.nodes import RabbitNode, RedisServer


def ready_checks(system: System) -> dict[str, str]:
    response = httpx.get(f"{system.api}/ready", timeout=10)
    return dict(response.json()["checks"])


def wait_ready_check(system: System, name: str, value: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while (checks := ready_checks(system))[name] != value:
        assert time.monotonic() < deadline, checks
        time.sleep(0.2)


@pytest.fixture
def on_own_rabbit(tmp_path: Path, own_rabbit: RabbitNode) -> Iterator[System]:
    """The whole system on a RabbitMQ node of the test's own, to restart."""
    with running_system(tmp_path, rabbitmq_url=own_rabbit.url) as running:
        yield running


def test_a_rabbitmq_restart_loses_no_saga(on_own_rabbit: System, own_rabbit: RabbitNode) -> None:
    system = on_own_rabbit
    shop = open_shop(system, balance="1000.00")
    system.cli("stock", "set", shop.products["apple"], "--quantity", "100", "--price", "5.00")
    before = [shop.place([("apple", 1)]) for _ in range(10)]
    own_rabbit.stop_app()
    wait_ready_check(system, "rabbitmq", "unreachable")
    # The front door still takes orders: they are durable in Redis, and the relay
    # publishes them once the broker is back.
    during = [shop.place([("apple", 1)]) for _ in range(5)]
    own_rabbit.start_app()
    wait_ready_check(system, "rabbitmq", "ok", within=60)
    sagas = [system.wait_terminal(shop.token, s, within=60) for s in before + during]
    assert [s["status"] for s in sagas] == ["completed"] * 15
    check_books(shop, sagas, stock=100, balance="1000.00")
    system.check_alive()


def test_a_redis_crash_and_restart_loses_no_saga(tmp_path: Path, own_redis: RedisServer) -> None:
    server = own_redis
    with running_system(tmp_path, redis_url=server.url) as system:
        shop = open_shop(system, balance="1000.00")
        system.cli("stock", "set", shop.products["apple"], "--quantity", "100", "--price", "5.00")
        before = [shop.place([("apple", 1)]) for _ in range(10)]
        server.kill()  # kill -9, mid-saga
        wait_ready_check(system, "redis", "unreachable")
        response = system.place_order(shop.token, shop.body([("apple", 1)]))
        assert response.status_code == 503, response.text
        time.sleep(2)
        server.start()  # same data directory: the append-only file brings it all back
        wait_ready_check(system, "redis", "ok")
        after = [shop.place([("apple", 1)]) for _ in range(5)]
        sagas = [system.wait_terminal(shop.token, s, within=60) for s in before + after]
        assert [s["status"] for s in sagas] == ["completed"] * 15
        check_books(shop, sagas, stock=100, balance="1000.00")
        system.check_alive()
