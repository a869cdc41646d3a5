"""`saga up`: every process as its child, and none left behind however `saga up` ends."""

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.servers import (
    RABBITMQ_URL,
    REDIS_URL,
    forget_namespace,
    free_port,
    free_ports,
    fresh_namespace,
    rabbitmq_or_skip,
    redis_or_skip,
)
from tests.waiting import eventually_sync

WORKERS = {"orchestrator", "stock", "payment", "order"}
CHILDREN = {"auth", "api", *WORKERS}


async def _servers_or_skip() -> None:
    redis = await redis_or_skip()
    await redis.aclose()
    connection = await rabbitmq_or_skip()
    await connection.close()


@pytest.fixture
def namespace() -> Iterator[str]:
    asyncio.run(_servers_or_skip())
    name = fresh_namespace()
    yield name
    forget_namespace(name)


def saga_up(
    namespace: str, *, auth_port: int | None = None, metrics_port: int = 0
) -> subprocess.Popen[str]:
    """`saga up` on free ports, its output (stdout and stderr) on a pipe; its workers
    serve metrics from `metrics_port` on (0: none)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "saga",
            "up",
            "--api-port",
            str(free_port()),
            "--auth-port",
            str(auth_port or free_port()),
            "--metrics-port",
            str(metrics_port),
        ],
        env={
            **os.environ,
            "SAGA_NAMESPACE": namespace,
            "SAGA_REDIS_URL": REDIS_URL,
            "SAGA_RABBITMQ_URL": RABBITMQ_URL,
            "SAGA_LOG_FORMAT": "json",
            "NO_COLOR": "1",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_running(up: subprocess.Popen[str]) -> list[str]:
    """Read `saga up`'s lines until every worker says it runs; the lines read."""
    assert up.stdout is not None
    lines: list[str] = []
    running: set[str] = set()
    for line in up.stdout:
        lines.append(line)
        name, _, text = line.partition("|")
        if "running" in text:
            running.add(name.strip())
        if running >= WORKERS:
            return lines
    raise AssertionError(f"saga up ended before every worker ran: {''.join(lines)}")


@dataclass(frozen=True)
class Child:
    """A child process of `saga up`: its pid and start time (a pid may be used again)."""

    pid: int
    started: str
    args: str

    @property
    def alive(self) -> bool:
        """Whether it still runs (a zombie nobody reaped has ended)."""
        stat = _stat(self.pid)
        return stat is not None and stat[19] == self.started and stat[0] not in ("Z", "X")


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command name (state, ppid, …), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def children_of(pid: int) -> dict[str, Child]:
    """The processes whose parent is `pid`, by the name `saga up` gives them."""
    found: dict[str, Child] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is None or int(stat[1]) != pid:
            continue
        try:
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        names = [n for n in CHILDREN if f" {n} " in f"{args} "]
        found[names[-1] if len(names) == 1 else args] = Child(int(entry.name), stat[19], args)
    return found


def wait_children(up: subprocess.Popen[str]) -> dict[str, Child]:
    """Every one of the six children of `saga up`."""
    return eventually_sync(
        lambda: children_of(up.pid),
        until=lambda found: set(found) >= CHILDREN,
        what="six children of saga up",
    )


def gone(children: dict[str, Child]) -> None:
    """Wait until none of `children` runs."""
    eventually_sync(
        lambda: {n: c.pid for n, c in children.items() if c.alive},
        until=lambda alive: not alive,
        within=30,
        what="every child of saga up gone",
    )


@contextmanager
def running_up(
    namespace: str, *, metrics_port: int = 0
) -> Iterator[tuple[subprocess.Popen[str], dict[str, Child]]]:
    """`saga up` with every worker running, and its six children; afterwards, whatever
    the test found, none of them is left running."""
    up = saga_up(namespace, metrics_port=metrics_port)
    children: dict[str, Child] = {}
    try:
        wait_running(up)
        children = wait_children(up)
        yield up, children
    finally:
        up.kill()
        up.wait()
        for child in children.values():
            if child.alive:
                os.kill(child.pid, signal.SIGKILL)


LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@LINUX
def test_saga_up_runs_everything_and_stops_on_ctrl_c(namespace: str) -> None:
    with running_up(namespace) as (up, children):
        up.send_signal(signal.SIGINT)
        rest, _ = up.communicate(timeout=30)
        assert up.returncode == 0, rest
        gone(children)


@LINUX
def test_every_worker_serves_its_metrics_on_a_port_of_its_own(namespace: str) -> None:
    first = free_ports(len(WORKERS))
    with running_up(namespace, metrics_port=first) as (up, _):
        for port in range(first, first + len(WORKERS)):
            page = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            assert "# TYPE python_info gauge" in page, port
        orchestrator = httpx.get(f"http://127.0.0.1:{first}/metrics", timeout=5).text
        assert "# TYPE saga_queue_consumers gauge" in orchestrator
        up.send_signal(signal.SIGINT)
        up.communicate(timeout=30)


@LINUX
def test_a_hangup_stops_everything_even_with_the_terminal_gone(namespace: str) -> None:
    with running_up(namespace) as (up, children):
        # As when the terminal closes: the output has nowhere to go, then SIGHUP.
        assert up.stdout is not None
        up.stdout.close()
        up.send_signal(signal.SIGHUP)
        assert up.wait(timeout=30) == 0
        gone(children)


@LINUX  # and PR_SET_PDEATHSIG, which is Linux's
def test_the_children_of_a_saga_up_killed_hard_stop_too(namespace: str) -> None:
    with running_up(namespace) as (up, children):
        up.kill()
        up.wait(timeout=10)
        gone(children)


@LINUX
def test_a_child_that_dies_is_named_with_how_and_everything_stops(namespace: str) -> None:
    with running_up(namespace) as (up, children):
        os.kill(children["stock"].pid, signal.SIGKILL)
        rest, _ = up.communicate(timeout=30)
        assert up.returncode == 1, rest
        assert "saga up: stock exited (signal KILL); stopping everything" in rest, rest
        gone(children)


def test_saga_up_with_a_port_taken_stops_everything_without_a_traceback(namespace: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        up = saga_up(namespace, auth_port=taken.getsockname()[1])
        said, _ = up.communicate(timeout=60)
    assert up.returncode == 1
    # uvicorn's code for a failed start (3), or another: said as a code, not a signal.
    assert re.search(r"saga up: auth exited \(code [1-9][0-9]*\); stopping everything", said)
    assert "Traceback" not in said


def test_a_child_whose_saga_up_is_already_gone_does_not_start() -> None:
    ours = subprocess.run(
        [sys.executable, "-m", "saga.cli.child", str(os.getpid()), "--version"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (ours.returncode, ours.stdout.startswith("saga ")) == (0, True), ours
    # Its parent is this test, not the pid it is told: as if saga up died as it forked.
    orphan = subprocess.run(
        [sys.executable, "-m", "saga.cli.child", "1", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (orphan.returncode, orphan.stdout) == (1, ""), orphan
    assert orphan.stderr.strip() == "saga up (pid 1) is gone; not starting"
