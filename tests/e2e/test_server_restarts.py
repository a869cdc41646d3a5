"""Every process rides out a RabbitMQ restart and a Redis restart, and resumes by itself."""

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.e2e.shop import check_books, open_shop
from tests.e2e.system import System, free_port, running_system


def ready_checks(system: System) -> dict[str, str]:
    response = httpx.get(f"{system.api}/ready", timeout=10)
    return dict(response.json()["checks"])


def wait_ready_check(system: System, name: str, value: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while (checks := ready_checks(system))[name] != value:
        assert time.monotonic() < deadline, checks
        time.sleep(0.2)


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


@pytest.fixture
def fresh_system(tmp_path: Path) -> Iterator[System]:
    with running_system(tmp_path) as running:
        yield running


def test_a_rabbitmq_restart_loses_no_saga(fresh_system: System) -> None:
    system = fresh_system
    shop = open_shop(system, balance="1000.00")
    system.cli("stock", "set", shop.products["apple"], "--quantity", "100", "--price", "5.00")
    before = [shop.place([("apple", 1)]) for _ in range(10)]
    rabbitmqctl("stop_app")
    try:
        wait_ready_check(system, "rabbitmq", "unreachable")
        # The front door still takes orders: they are durable in Redis, and the relay
        # publishes them once the broker is back.
        during = [shop.place([("apple", 1)]) for _ in range(5)]
    finally:
        rabbitmqctl("start_app")
    wait_ready_check(system, "rabbitmq", "ok", within=60)
    sagas = [system.wait_terminal(shop.token, s, within=60) for s in before + during]
    assert [s["status"] for s in sagas] == ["completed"] * 15
    check_books(shop, sagas, stock=100, balance="1000.00")
    system.check_alive()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, "RedisServer"]]:
    server = RedisServer(port=free_port(), data=tmp_path / "redis")
    server.start()
    try:
        yield f"redis://127.0.0.1:{server.port}/0", server
    finally:
        server.stop()


class RedisServer:
    """A Redis of the test's own, with an append-only file synced on every write."""

    def __init__(self, *, port: int, data: Path) -> None:
        self.port, self.data = port, data
        self.proc: subprocess.Popen[bytes] | None = None
        data.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--dir",
                str(self.data),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "own Redis did not start"
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def test_a_redis_crash_and_restart_loses_no_saga(
    tmp_path: Path, own_redis: tuple[str, RedisServer]
) -> None:
    url, server = own_redis
    with running_system(tmp_path, redis_url=url) as system:
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
