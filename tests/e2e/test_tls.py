"""TLS to Redis and RabbitMQ (`rediss://`, `amqps://`): servers of the test's own with a
throw-away CA; every client verifies the server's certificate, trusting the private CA
the URL names, and refuses a server whose CA it does not trust."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from contracts.topology import Topology
from saga.connections import redis_client
from saga.rabbit import RabbitTransport
from saga.settings import Settings
from saga.transport import TransportUnavailable
from tests.nodes import RabbitNode, RedisServer, running
from tests.servers import free_port, fresh_namespace
from tests.tls import Certificates, make_ca, make_certificates
from tests.waiting import eventually_sync


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA that signed nothing of the servers'."""
    return make_ca(tmp_path_factory.mktemp("other-ca"), "other-ca")[0]


@pytest.fixture(scope="module")
def tls_redis(
    tmp_path_factory: pytest.TempPathFactory, certificates: Certificates
) -> Iterator[RedisServer]:
    yield from running(RedisServer(tmp_path_factory.mktemp("redis-tls"), tls=certificates))


@pytest.fixture(scope="module")
def tls_rabbit(
    tmp_path_factory: pytest.TempPathFactory, certificates: Certificates
) -> Iterator[RabbitNode]:
    yield from running(RabbitNode(tmp_path_factory.mktemp("rabbitmq-tls"), tls=certificates))


def trusting(url: str, parameter: str, ca: Path) -> str:
    """The URL with the private CA to trust (`ssl_ca_certs` for Redis, `cafile` for AMQP)."""
    return f"{url}?{parameter}={ca}"


async def test_redis_over_tls_verifies_the_server_with_the_private_ca(
    tls_redis: RedisServer, certificates: Certificates
) -> None:
    url = trusting(tls_redis.url, "ssl_ca_certs", certificates.ca)
    redis = redis_client(Settings(redis_url=url))
    try:
        await redis.set("tls-check", "over TLS")
        assert await redis.get("tls-check") == "over TLS"
    finally:
        await redis.aclose()


@pytest.mark.parametrize("trusted", ["the system's CAs", "another CA"])
async def test_redis_over_tls_refuses_a_server_signed_by_a_ca_not_trusted(
    tls_redis: RedisServer, other_ca: Path, trusted: str
) -> None:
    url = (
        tls_redis.url
        if trusted == "the system's CAs"
        else trusting(tls_redis.url, "ssl_ca_certs", other_ca)
    )
    redis = redis_client(Settings(redis_url=url))
    try:
        with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await redis.ping()
    finally:
        await redis.aclose()


async def test_rabbitmq_over_tls_verifies_the_server_with_the_private_ca(
    tls_rabbit: RabbitNode, certificates: Certificates
) -> None:
    url = f"amqps://guest:guest@127.0.0.1:{tls_rabbit.tls_port}/"
    transport = RabbitTransport(trusting(url, "cafile", certificates.ca), Topology("tlscheck"))
    try:
        await transport.connect()  # declares the whole topology over TLS
        assert transport.connected
    finally:
        await transport.close()


@pytest.mark.parametrize("trusted", ["the system's CAs", "another CA"])
async def test_rabbitmq_over_tls_refuses_a_server_signed_by_a_ca_not_trusted(
    tls_rabbit: RabbitNode, other_ca: Path, trusted: str
) -> None:
    url = f"amqps://guest:guest@127.0.0.1:{tls_rabbit.tls_port}/"
    if trusted == "another CA":
        url = trusting(url, "cafile", other_ca)
    transport = RabbitTransport(url, Topology("tlscheck"))
    try:
        with pytest.raises(TransportUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await transport.connect()
    finally:
        await transport.close()


def test_the_processes_and_the_cli_run_over_tls(
    tls_redis: RedisServer,
    tls_rabbit: RabbitNode,
    certificates: Certificates,
    tmp_path: Path,
) -> None:
    env = {
        "SAGA_NAMESPACE": fresh_namespace(),
        "SAGA_REDIS_URL": trusting(tls_redis.url, "ssl_ca_certs", certificates.ca),
        "SAGA_RABBITMQ_URL": trusting(
            f"amqps://guest:guest@127.0.0.1:{tls_rabbit.tls_port}/", "cafile", certificates.ca
        ),
        "SAGA_LOG_FORMAT": "json",
    }

    def saga(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "saga", *args],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    added = saga("auth", "add-user", "tls@example.com", "--password", "correct-horse")
    assert added.returncode == 0, added.stderr
    port = free_port()
    processes = [
        _spawn(tmp_path / "auth.log", env, "auth", "--port", str(port)),
        _spawn(tmp_path / "orchestrator.log", env, "orchestrator"),
    ]
    try:
        base = f"http://127.0.0.1:{port}"
        eventually_sync(lambda: _health(base, processes[0]), within=30, what="auth up")
        signed_in = httpx.post(
            f"{base}/auth/token",
            json={"email": "tls@example.com", "password": "correct-horse"},
            timeout=10,
        )
        assert signed_in.status_code == 200, signed_in.text
        # The orchestrator declared the topology over TLS; an operator command reads it.
        listed = eventually_sync(
            lambda: saga("dlq", "list"), until=lambda r: r.returncode == 0, within=30
        )
        assert "no dead letters" in listed.stdout.lower(), listed.stdout
        assert processes[1].poll() is None
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=15)


def _spawn(log: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "saga", *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _health(base: str, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, "the auth service exited"
    try:
        return httpx.get(f"{base}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
