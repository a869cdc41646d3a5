"""`saga demo` runs the whole system in one process and touches no server, even when the
settings point at real ones."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys

import aio_pika
import httpx
import redis

from contracts.topology import Topology
from tests.servers import RABBITMQ_URL, REDIS_URL, free_port, fresh_namespace, missing


def run_demo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "saga", "demo", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_demo_needs_no_server() -> None:
    result = run_demo(
        {
            "SAGA_REDIS_URL": "redis://127.0.0.1:1/0",
            "SAGA_RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:1/",
            "SAGA_AUTH_URL": "http://127.0.0.1:1",
        },
        "--orders",
        "10",
    )
    assert result.returncode == 0, result.stderr
    assert "10 sagas" in result.stdout and "every saga ended as expected" in result.stdout


def test_the_demo_ends_every_saga_as_its_scenario_says_and_leaves_real_servers_alone() -> None:
    namespace = fresh_namespace()
    result = run_demo(
        {
            "SAGA_REDIS_URL": REDIS_URL,
            "SAGA_RABBITMQ_URL": RABBITMQ_URL,
            "SAGA_NAMESPACE": namespace,
        },
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    sagas = report["sagas"]
    assert len(sagas) == 20
    assert {s["scenario"] for s in sagas} == {
        "completes",
        "cash on delivery",
        "out of stock",
        "insufficient funds",
        "unknown vendor",
    }
    assert all(s["status"] == s["expected"] for s in sagas)
    reasons = {s["scenario"]: s["reason"] for s in sagas if s["status"] == "compensated"}
    assert reasons == {
        "out of stock": "insufficient_stock",
        "insufficient funds": "insufficient_funds",
        "unknown vendor": "unknown_vendor",
    }
    try:
        client = redis.Redis.from_url(REDIS_URL)
        assert list(client.scan_iter(match=f"{namespace}:*")) == []
        client.close()
    except redis.ConnectionError as exc:
        missing("Redis", REDIS_URL, exc)
    assert not _queue_exists(Topology(namespace).orchestrator_queue)


def _queue_exists(name: str) -> bool:
    async def probe() -> bool:
        async with await aio_pika.connect(RABBITMQ_URL) as connection:
            channel = await connection.channel()
            try:
                await channel.declare_queue(name, passive=True)
            except aio_pika.exceptions.ChannelClosed:
                return False
            return True

    return asyncio.run(probe())


def test_the_demo_serves_the_console_until_interrupted() -> None:
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "saga", "demo", "--serve", "--port", str(port), "--orders", "4"],
        env={**os.environ, "SAGA_REDIS_URL": "redis://127.0.0.1:1/0", "NO_COLOR": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert demo.stdout is not None
        said = [demo.stdout.readline() for _ in range(2)]  # bounded: the process ends or says
        assert said[0].strip() == f"the console: http://127.0.0.1:{port}/console", said
        assert said[1].strip() == "sign in as admin@example.com, password demo-password"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            signed_in = client.post(
                "/console/login",
                data={"email": "admin@example.com", "password": "demo-password"},
            )
            assert signed_in.status_code == 303
            assert client.get("/console/sagas").text.count("data-saga-id=") == 4
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=30) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()


def test_the_demo_says_in_one_line_when_its_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_demo({}, "--serve", "--port", str(port))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot serve the console on port {port}" in lines[0], lines
