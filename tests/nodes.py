"""Servers of a test's own — a RabbitMQ node, a Redis — on free loopback ports with their
own data directories, for fault tests to stop and crash without touching the shared ones."""

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import aio_pika
import redis

from saga.connections import AnyRedis, redis_client
from saga.settings import Settings
from tests.servers import absent, free_port
from tests.tls import Certificates

# Debian, Ubuntu and the RPMs put RabbitMQ's own scripts here; `rabbitmq-server` on the
# PATH there is a wrapper that runs them as the `rabbitmq` user with its cookie and home.
PACKAGED_SBIN = Path("/usr/lib/rabbitmq/bin")


def rabbitmq_sbin() -> Path:
    """Where RabbitMQ's own `rabbitmq-server` and `rabbitmqctl` are; skip (fail under CI)
    when RabbitMQ is not installed."""
    if (PACKAGED_SBIN / "rabbitmq-server").exists():
        return PACKAGED_SBIN
    found = shutil.which("rabbitmq-server")  # a generic-unix or Homebrew install
    if found is None:
        absent(f"rabbitmq-server is not installed (not in {PACKAGED_SBIN}, not on the PATH)")
    return Path(found).parent


def tail(log: Path, lines: int = 40) -> str:
    """The last lines of a log, for an error message."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return f"({log} was not written)"
    return "\n".join(text.splitlines()[-lines:])


def wait_started(
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    what: str,
    log: Path,
    within: float,
) -> None:
    """Wait until `ready()`; a server that exits first, or is not ready within `within`
    seconds, is an error that shows the end of its log."""
    deadline = time.monotonic() + within
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(
                f"{what} exited {proc.returncode} while starting; the end of {log}:\n{tail(log)}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what} was not up within {within}s; the end of {log}:\n{tail(log)}"
            )
        time.sleep(0.2)


def stop_group(proc: subprocess.Popen[bytes], *, within: float = 60.0) -> None:
    """SIGTERM the process group `proc` leads, SIGKILL it if it outlives `within`; then
    kill what is left of the group (a child the leader left behind)."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    _signal_group(proc.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is gone: what was wanted
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """Whether any process of the group `pgid` is left (a zombie counts until reaped)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class RabbitNode:
    """A RabbitMQ node of the test's own, started in the foreground as a child process:
    its own node name, AMQP and distribution ports, data, logs, config files (the system's
    ones pin port 5672 and the node name) and Erlang cookie, and no plugins (so no
    management or Prometheus listener). Blocking: from async code call it in a thread."""

    def __init__(
        self, root: Path, *, tls: Certificates | None = None, cookie: str | None = None
    ) -> None:
        self.root = root
        self.port = amqp_port = free_port()
        # With certificates, a TLS listener too (clients are not asked for theirs).
        self.tls_port = free_port() if tls else None
        dist_port = free_port()
        self.name = f"saga-test-{uuid.uuid4().hex[:10]}@localhost"
        self.log = root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._sbin = rabbitmq_sbin()
        home = root / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie_file = home / ".erlang.cookie"
        if not cookie_file.exists():
            # Nodes of one cluster share theirs: it is what lets them talk to each other.
            cookie_file.write_text(cookie or secrets.token_hex(20).upper())
            cookie_file.chmod(0o400)
        config = root / "rabbitmq.conf"
        config.write_text(f"listeners.tcp.local = 127.0.0.1:{amqp_port}\n")
        if tls is not None:
            with config.open("a") as conf:
                conf.write(
                    f"listeners.ssl.local = 127.0.0.1:{self.tls_port}\n"
                    f"ssl_options.cacertfile = {tls.ca}\n"
                    f"ssl_options.certfile = {tls.cert}\n"
                    f"ssl_options.keyfile = {tls.key}\n"
                    "ssl_options.verify = verify_none\n"
                    "ssl_options.fail_if_no_peer_cert = false\n"
                )
        conf_env = root / "rabbitmq-env.conf"
        # The distribution listens on loopback only, as the system node's does here.
        conf_env.write_text(
            "ERL_EPMD_ADDRESS=127.0.0.1\n"
            'SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"\n'
        )
        plugins = root / "enabled_plugins"
        plugins.write_text("[].\n")
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        # Both the node and its rabbitmqctl read these: the same HOME gives them the same
        # cookie, the same env file the same settings.
        self.env = {
            **inherited,
            "HOME": str(home),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(amqp_port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_CONFIG_FILES": str(root / "conf.d"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(root / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(conf_env),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(root / "plugins-expand"),
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(root / "logs"),
            "RABBITMQ_LOGS": "-",  # to standard output, which goes to self.log
        }

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self, *, within: float = 120.0) -> None:
        """Start the node (on the same data if it ran before) and wait until it takes
        AMQP connections."""
        self.launch()
        self._wait_accepting(within)

    def launch(self) -> None:
        """Start the node and return at once (wait_accepting waits for it)."""
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} is running"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self._sbin / "rabbitmq-server")],
                env=self.env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, to stop it whole
            )

    def ctl(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run `rabbitmqctl -n <this node> <args>`; an error names the command and its output."""
        result = subprocess.run(
            [str(self._sbin / "rabbitmqctl"), "-n", self.name, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"rabbitmqctl {' '.join(args)} on {self.name} exited {result.returncode}: "
                f"{result.stdout}{result.stderr}"
            )
        return result

    def stop_app(self) -> None:
        """Stop RabbitMQ on the node (the Erlang VM stays up): every client loses its
        connection and none can connect until start_app."""
        self.ctl("stop_app")

    def start_app(self, *, within: float = 120.0) -> None:
        """Start RabbitMQ on the node again and wait until it takes AMQP connections."""
        self.ctl("start_app")
        self._wait_accepting(within)

    def stop(self) -> None:
        """Stop the node by its PID, with every process it started; its data stays."""
        if self.proc is not None:
            stop_group(self.proc)

    def processes(self) -> list[int]:
        """The PIDs of every process still running with this node's environment (Linux:
        it reads /proc)."""
        mark = f"RABBITMQ_NODENAME={self.name}".encode()
        found = []
        for environ in Path("/proc").glob("[0-9]*/environ"):
            with contextlib.suppress(OSError):  # gone meanwhile, or not ours to read
                if mark in environ.read_bytes().split(b"\0"):
                    found.append(int(environ.parent.name))
        return found

    def kill(self) -> None:
        """kill -9 the node, every process of its group: it ends where it is."""
        assert self.proc is not None
        _signal_group(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def wait_accepting(self, within: float = 120.0) -> None:
        """Wait until the node takes AMQP connections (an error shows its log's end)."""
        self._wait_accepting(within)

    def _wait_accepting(self, within: float) -> None:
        assert self.proc is not None
        wait_started(
            self.proc,
            self._accepts_amqp,
            what=f"RabbitMQ node {self.name} (AMQP on port {self.port})",
            log=self.log,
            within=within,
        )

    def _accepts_amqp(self) -> bool:
        async def connect() -> bool:
            try:
                connection = await aio_pika.connect(self.url, timeout=2)
            except (TimeoutError, OSError, aio_pika.exceptions.AMQPError):
                return False
            await connection.close()
            return True

        return asyncio.run(connect())


class RabbitCluster:
    """Three RabbitMQ nodes of the test's own (RabbitNode each: own names, ports, data and
    logs, one Erlang cookie), the second and third joined to the first with
    `rabbitmqctl join_cluster`."""

    def __init__(self, root: Path, *, size: int = 3) -> None:
        cookie = secrets.token_hex(20).upper()
        self.nodes = [RabbitNode(root / f"node{n}", cookie=cookie) for n in range(1, size + 1)]

    @property
    def url(self) -> str:
        """Every node's AMQP URL, comma-separated (as SAGA_RABBITMQ_URL takes them)."""
        return ",".join(node.url for node in self.nodes)

    def start(self, *, within: float = 180.0) -> None:
        """Start the nodes side by side, then join the others to the first."""
        for node in self.nodes:
            node.launch()
        for node in self.nodes:
            node.wait_accepting(within)
        first, *others = self.nodes
        for node in others:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.name)
            node.start_app(within=within)
        status = json.loads(first.ctl("cluster_status", "--formatter", "json").stdout)
        assert sorted(status["running_nodes"]) == sorted(n.name for n in self.nodes), status

    def busiest(self) -> RabbitNode:
        """The node with the most client connections."""
        # A connection's pid names its node: <saga-test-…@localhost.1699.0>.
        pids = self.nodes[0].ctl("list_connections", "pid", "-s").stdout
        return max(self.nodes, key=lambda node: pids.count(f"<{node.name}."))

    def stop(self) -> None:
        """Stop every node by its PID; their data stays."""
        for node in self.nodes:
            node.stop()


class RedisServer:
    """A Redis of the test's own, with an append-only file synced on every write, or a
    replica of another; with certificates, it listens with TLS only (clients are not
    asked for theirs)."""

    def __init__(
        self,
        data: Path,
        *,
        replica_of: "RedisServer | None" = None,
        tls: Certificates | None = None,
        clustered: bool = False,
    ) -> None:
        self.port, self.data, self.tls = free_port(), data, tls
        # A cluster node's bus port, chosen rather than left at port + 10,000 (which
        # may be taken, or past 65,535).
        self.bus_port = free_port() if clustered else None
        self.log = data / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.primary = replica_of
        data.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def _listening(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return [
            "--port", "0", "--tls-port", str(self.port),
            "--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key),
            "--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "no",
        ]  # fmt: skip

    def start(self, *, within: float = 20.0) -> None:
        """Start Redis (on the same data if it ran before) and wait until it answers."""
        binary = shutil.which("redis-server")
        if binary is None:
            absent("redis-server is not installed (not on the PATH)")
        self.proc = subprocess.Popen(
            [
                str(binary),
                *self._listening(),
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
                "--logfile",
                str(self.log),
                *(
                    ()
                    if self.primary is None
                    else ("--replicaof", "127.0.0.1", str(self.primary.port))
                ),
                *(
                    ()
                    if self.bus_port is None
                    else (
                        "--cluster-enabled",
                        "yes",
                        "--cluster-port",
                        str(self.bus_port),
                        "--cluster-config-file",
                        str(self.data / "nodes.conf"),
                        "--cluster-node-timeout",
                        "2000",
                    )
                ),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis(
            port=self.port,
            socket_connect_timeout=1,
            ssl=self.tls is not None,
            ssl_ca_certs=str(self.tls.ca) if self.tls else None,
        )
        try:
            wait_started(
                self.proc,
                lambda: _pings(client),
                what=f"Redis on port {self.port}",
                log=self.log,
                within=within,
            )
        finally:
            client.close()

    def replicas(self) -> int:
        """How many replicas this server has connected."""
        client = redis.Redis(port=self.port, socket_connect_timeout=1, decode_responses=True)
        try:
            return int(client.info("replication").get("connected_slaves", 0))
        except redis.RedisError:
            return 0
        finally:
            client.close()

    def count_keys(self, match: str) -> int:
        """How many keys matching a pattern this server holds itself."""
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        try:
            return sum(1 for _ in client.scan_iter(match=match, count=1000))
        finally:
            client.close()

    def pause(self) -> None:
        """SIGSTOP: alive, connected, silent (a replica that falls behind)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        """kill -9: Redis ends where it is, with what its append-only file holds."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop Redis by its PID (SIGTERM, then SIGKILL)."""
        if self.proc is not None:
            stop_group(self.proc, within=10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


class RedisClusterNodes:
    """A Redis Cluster of the test's own: `primaries` primaries with one replica each, on
    free loopback ports, every node with its own data directory and append-only file."""

    def __init__(self, root: Path, *, primaries: int = 3) -> None:
        self.nodes = [RedisServer(root / f"node-{i}", clustered=True) for i in range(primaries * 2)]
        self.primaries = primaries

    @property
    def url(self) -> str:
        """The cluster's URL as SAGA_REDIS_URL takes it: every node, by address."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self, *, within: float = 60.0) -> None:
        """Start every node, join them into a cluster (the first `primaries` nodes are
        primaries, each of the rest a replica) and wait until it serves every slot."""
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            absent("redis-cli is not installed (not on the PATH)")
        created = subprocess.run(
            [
                str(cli),
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed:\n{created.stdout}{created.stderr}"
            )
        self.wait_healthy(within=within)

    def wait_healthy(self, *, within: float = 60.0) -> None:
        """Wait until every running node says the cluster is ok and serves all slots with
        `primaries` primaries (after a failover: the replica promoted)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if all(self._healthy(n) for n in self.nodes if n.proc and n.proc.poll() is None):
                return
            time.sleep(0.2)
        raise TimeoutError(f"the Redis Cluster was not healthy within {within} s")

    def _healthy(self, node: RedisServer) -> bool:
        try:
            info, owners = _cluster_view(node)
        except redis.RedisError:
            return False
        return "cluster_state:ok" in info and len(owners) == self.primaries

    def wait_replicated(self, *, within: float = 60.0) -> None:
        """Wait until the cluster is healthy and every primary has a replica connected
        (after a failover: the old primary, restarted, back as its successor's replica)."""
        deadline = time.monotonic() + within
        self.wait_healthy(within=within)
        while time.monotonic() < deadline:
            if all(n.replicas() >= 1 for n in self.primary_nodes()):
                return
            time.sleep(0.2)
        raise TimeoutError(f"not every primary had a replica within {within} s")

    def primary_nodes(self) -> list[RedisServer]:
        """The running nodes that own slots now (after a failover: the promoted replica)."""
        running = [n for n in self.nodes if n.proc and n.proc.poll() is None]
        _, owners = _cluster_view(running[0])
        return [n for n in running if f"127.0.0.1:{n.port}" in owners]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _cluster_view(node: RedisServer) -> tuple[str, set[str]]:
    """What a node says: its CLUSTER INFO, and the addresses of the healthy primaries
    that own slots (CLUSTER NODES: id, address@bus, flags, primary, ..., slots)."""
    client = redis.Redis(port=node.port, socket_connect_timeout=1, decode_responses=True)
    try:
        info = str(client.execute_command("CLUSTER", "INFO"))
        lines = str(client.execute_command("CLUSTER", "NODES")).splitlines()
    finally:
        client.close()
    owners = {
        fields[1].split("@")[0]
        for fields in (line.split() for line in lines)
        if "master" in fields[2] and "fail" not in fields[2] and len(fields) > 8
    }
    return info, owners


def cluster_client(cluster: RedisClusterNodes) -> AnyRedis:
    """A client of the cluster as the engine makes it from SAGA_REDIS_URL."""
    return redis_client(Settings(redis_url=cluster.url))


Started = TypeVar("Started", RabbitNode, RabbitCluster, RedisServer, RedisClusterNodes)


def running(server: Started) -> Iterator[Started]:
    """A server of the test's own, started, then stopped (by its PID) afterwards."""
    try:
        server.start()
        yield server
    finally:
        server.stop()
