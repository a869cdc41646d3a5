"""The whole system as real processes on the real servers, driven like a user would."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from contracts.topology import Topology
from saga.amqp_nodes import connect_pika
from tests.servers import (
    RABBITMQ_URL,
    REDIS_URL,
    SHOP_PARTICIPANTS,
    forget_namespace,
    free_port,
    fresh_namespace,
)

TERMINAL = ("completed", "compensated", "failed")


@dataclass
class System:
    """auth, api, orchestrator and the three services of one namespace, as subprocesses."""

    namespace: str
    logs: Path
    redis_url: str = REDIS_URL
    rabbitmq_url: str = RABBITMQ_URL
    settings: dict[str, str] = field(default_factory=dict)
    replicas: int = 1
    metrics: bool = False
    metrics_ports: dict[str, int] = field(default_factory=dict)
    api_port: int = field(default_factory=free_port)
    auth_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    commands: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SAGA_NAMESPACE": self.namespace,
            "SAGA_REDIS_URL": self.redis_url,
            "SAGA_RABBITMQ_URL": self.rabbitmq_url,
            "SAGA_AUTH_URL": f"http://127.0.0.1:{self.auth_port}",
            "SAGA_LOG_FORMAT": "json",
            "SAGA_RELAY_GRACE": "2",
            # Tests place orders faster than a customer should; the limit itself is
            # tested on a front door of its own (test_front_door).
            "SAGA_RATE_LIMIT": "1000/second",
            # Every test signs in from 127.0.0.1: failures of one must not make the
            # others wait. Throttling by address is tested in
            # tests/integration/test_auth_service.py.
            "SAGA_AUTH_ADDRESS_FAILURES": "100000",
            "NO_COLOR": "1",
            **self.settings,
        }

    @property
    def workers(self) -> list[str]:
        """The names of the orchestrator and participant processes (not auth or api)."""
        return [n for n in self.commands if n.split("-")[0] in ("orchestrator", *SHOP_PARTICIPANTS)]

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def auth(self) -> str:
        return f"http://127.0.0.1:{self.auth_port}"

    def spawn(
        self, name: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "saga", *args],
            env=env or self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes[name] = proc
        self.commands[name] = args
        return proc

    def start(self) -> None:
        self.spawn("auth", "auth", "--port", str(self.auth_port))
        self.spawn("api", "api", "--port", str(self.api_port))
        for n in range(1, self.replicas + 1):
            suffix = "" if n == 1 else f"-{n}"
            self.spawn(
                f"orchestrator{suffix}", "orchestrator", *self._metrics(f"orchestrator{suffix}")
            )
            for participant in SHOP_PARTICIPANTS:
                name = f"{participant}{suffix}"
                self.spawn(name, "service", participant, *self._metrics(name))
        self.wait_ready()

    def _metrics(self, name: str) -> list[str]:
        if not self.metrics:
            return []
        self.metrics_ports[name] = free_port()
        return ["--metrics-port", str(self.metrics_ports[name])]

    @contextmanager
    def extra_api(self, name: str, **settings: str) -> Iterator[str]:
        """A second front door on this namespace with other settings; its base URL."""
        with self.extra(name, "api", **settings) as base:
            yield base

    @contextmanager
    def extra_auth(self, name: str, **settings: str) -> Iterator[str]:
        """A second auth service on this namespace with other settings; its base URL."""
        with self.extra(name, "auth", **settings) as base:
            yield base

    @contextmanager
    def extra(self, name: str, command: str, **settings: str) -> Iterator[str]:
        """Another `saga <command>` server on this namespace with other settings, on a
        port of its own; its base URL."""
        port = free_port()
        proc = self.spawn(name, command, "--port", str(port), env={**self.env, **settings})
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    httpx.get(f"{base}/health", timeout=2)
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline and proc.poll() is None, (
                        f"{name} did not start"
                    )
                    time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=15)
            del self.processes[name]

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Stop one process (by default the hard way: kill -9)."""
        proc = self.processes[name]
        if proc.poll() is None:
            proc.send_signal(sig)
        proc.wait(timeout=15)

    def pause(self, name: str) -> None:
        """Freeze a process (SIGSTOP): alive, connected, silent."""
        self.processes[name].send_signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGCONT)

    def restart(self, name: str) -> None:
        """Start a stopped process again, as it was started."""
        assert self.processes[name].poll() is not None, f"{name} is still running"
        self.spawn(name, *self.commands[name])

    def wait_ready(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        last: object = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                response = httpx.get(f"{self.api}/ready", timeout=2)
                last = response.text
                if response.status_code == 200 and asyncio.run(self._all_consuming()):
                    return
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.2)
        raise AssertionError(f"system not ready within {within}s: {last}; logs in {self.logs}")

    async def _all_consuming(self) -> bool:
        topology = Topology(self.namespace, SHOP_PARTICIPANTS)
        queues = [
            topology.orchestrator_queue,
            *(topology.participant_queue(p) for p in SHOP_PARTICIPANTS),
        ]
        async with await connect_pika(self.rabbitmq_url) as connection:
            channel = await connection.channel()
            for name in queues:
                queue = await channel.declare_queue(name, passive=True)
                if not queue.declaration_result.consumer_count:
                    return False
        return True

    def check_alive(self) -> None:
        dead = {n: p.returncode for n, p in self.processes.items() if p.poll() is not None}
        if dead:
            raise AssertionError(f"processes exited: {dead}; logs in {self.logs}")

    def stop(self) -> dict[str, int]:
        """SIGTERM every process; their exit codes (a hung one is killed: -9)."""
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {}
        for name, proc in self.processes.items():
            try:
                codes[name] = proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
                codes[name] = -9
        return codes

    # --- driving it -----------------------------------------------------------------

    def cli(
        self, *args: str, check: bool = True, **settings: str
    ) -> subprocess.CompletedProcess[str]:
        """Run `saga <args>` in this system's environment (`settings` override it)."""
        result = subprocess.run(
            [sys.executable, "-m", "saga", *args],
            env={**self.env, **settings},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"saga {' '.join(args)} failed: {result.stderr}")
        return result

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def token(self, email: str, password: str = "correct-horse") -> str:
        response = httpx.post(
            f"{self.auth}/auth/token", json={"email": email, "password": password}, timeout=10
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def place_order(self, token: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(
            f"{self.api}/orders/create_order",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )

    def api_get(self, token: str, path: str) -> httpx.Response:
        return httpx.get(
            f"{self.api}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    def saga(self, token: str, saga_id: str) -> httpx.Response:
        return self.api_get(token, f"/sagas/{saga_id}")

    def wait_terminal(self, token: str, saga_id: str, within: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            response = self.saga(token, saga_id)
            assert response.status_code == 200, response.text
            body = response.json()
            if body["status"] in TERMINAL:
                return body
            time.sleep(0.05)
        self.check_alive()
        raise AssertionError(f"saga {saga_id} not terminal within {within}s: {body}")


def log_lines(path: Path, saga_id: str) -> list[dict[str, Any]]:
    """The JSON lines of a process's log about one saga."""
    lines = []
    for raw in path.read_text().splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if line.get("saga_id") == saga_id:
            lines.append(line)
    return lines


@contextmanager
def replicated(
    logs: Path, *, settings: dict[str, str] | None = None, **options: Any
) -> Iterator[System]:
    """Two orchestrators and two of each participant on one namespace, quick to time out
    and retry (for fault tests), unless `settings` says otherwise."""
    quick = {"SAGA_STEP_TIMEOUT": "2", "SAGA_RETRY_BACKOFF": "0.2", "SAGA_RELAY_GRACE": "1"}
    with running_system(
        logs, replicas=2, settings={**quick, **(settings or {})}, **options
    ) as running:
        yield running


@contextmanager
def running_system(logs: Path, **options: Any) -> Iterator[System]:
    """A whole system on a fresh namespace; afterwards stopped and its namespace removed."""
    system = System(namespace=fresh_namespace(), logs=logs, **options)
    try:
        system.start()
        yield system
    finally:
        system.stop()
        forget_namespace(
            system.namespace, redis_url=system.redis_url, rabbitmq_url=system.rabbitmq_url
        )
