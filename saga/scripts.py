"""Lua script calls gathered into pipelines: one round trip for every call of a loop turn.

Under load a process makes many script calls at once (the orchestrator appends for
every reply in hand, a participant runs a script for every command in hand). Each
call on its own costs a pool checkout, a socket write, a wake-up and a read; almost
all of it is the client's CPU, not Redis's. So a call is queued, and at the end of the
current turn of the event loop every queued call goes in one pipeline (not a
transaction: each script is atomic on its own, as it was). The pipeline is written on
a pooled connection directly, packed by hiredis: redis-py's own pipeline of scripts
asks SCRIPT EXISTS on every execute and packs in Python (60 µs for an append's
arguments here, against 7.5 µs).

What a caller sees is what a single call gives: its script's result, or its own
error. A connection that fails takes the whole pipeline with it, and every caller in
it gets the error, exactly as if its own call had failed: it may or may not have run,
and every caller here retries whole idempotent steps.

On a Redis Cluster the calls of a turn go in one pipeline per node, each to the node
that holds its keys' slot (every script's keys share one). A call answered MOVED did
not run (its slot moved: a failover, a resharding): the slot map is read again and the
call sent once more to the slot's node now. ASK (a slot half-way through a resharding)
is not followed: such a call fails as an outage, and its caller tries it again until
the slot has moved.
"""

import asyncio
import contextlib
import functools
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from hiredis import pack_command
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection
from redis.exceptions import (
    MaxConnectionsError,
    MovedError,
    NoScriptError,
    RedisError,
    ResponseError,
)

from saga.connections import AnyRedis, reread_slot_map

# A bound on one pipeline, so a burst is written and answered in pieces.
MAX_BATCH: Final = 256

_Call = tuple["Script | PlainCommand", Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]


class ReplicasBehind(RedisError, ConnectionError):
    """Fewer replicas than asked for confirmed a write in time: it is on the primary
    only, and what depends on it must wait (the input is tried again later). A Redis
    error to the front door (503) and an outage to a handler (tried again)."""

    def __init__(self, acked: int, wanted: int, timeout_ms: int) -> None:
        super().__init__(
            f"{acked} of {wanted} Redis replicas confirmed the write within {timeout_ms} ms"
        )


@dataclass(frozen=True)
class _Route:
    """Where a pipeline goes: how to take a connection there and give it back, and the
    key its WAIT probe writes (on the same node)."""

    acquire: Callable[[], Awaitable[AbstractConnection]]
    release: Callable[[AbstractConnection], Awaitable[None]]
    load: Callable[[str], Awaitable[object]]  # SCRIPT LOAD there
    probe_key: str
    node: str | None = None  # a cluster node's name


class ScriptBatcher:
    """Runs the scripts registered on it, batching calls into pipelines.

    At most `in_flight` pipelines are out at once; calls made meanwhile wait for the
    next one. Under a light load a call goes at once, alone; under a heavy one the
    pipelines grow with it, and the round trips per call fall.

    With `wait_replicas`, a pipeline holding a call of a `durable` script ends with a
    write to `probe_key` and `WAIT`: those calls answer only once that many replicas
    have everything written on the primary up to then (one WAIT for the whole pipeline;
    the probe makes it so even for a call that wrote nothing, such as a duplicate whose
    first write came from another connection), and raise ReplicasBehind if they do not
    within `wait_timeout_ms`.
    """

    def __init__(
        self,
        redis: AnyRedis,
        *,
        in_flight: int = 2,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
        probe_key: str = "replication-probe",
    ) -> None:
        self.redis = redis
        self._in_flight = in_flight
        self._wait_replicas = wait_replicas
        self._wait_timeout_ms = wait_timeout_ms
        self._probe_key = probe_key
        self._wait = _packed(("WAIT", wait_replicas, wait_timeout_ms))
        # A cluster node failed, or a slot moved: read the slot map again before the next
        # call (asking the node that failed, if one did, last).
        self._map_stale = False
        self._failed_node: str | None = None
        self._queued: list[_Call] = []
        self._scheduled = False
        self._flushing: set[asyncio.Task[None]] = set()
        self.round_trips = 0  # pipelines sent, for tests and curiosity

    def register(self, lua: str, *, durable: bool = False) -> "Script":
        """A script to call as `await script(keys=[...], args=[...])`; a `durable` one's
        writes are on the replicas asked for when it answers."""
        return Script(self, lua, durable=durable)

    def plain(self, name: str) -> "PlainCommand":
        """A plain Redis command (a read) to call as a script is, in the same pipelines:
        one command on the server rather than a script around it."""
        return PlainCommand(self, name)

    def call(
        self, script: "Script | PlainCommand", keys: Sequence[Any], args: Sequence[Any]
    ) -> "asyncio.Future[Any]":
        """Queue one call; the future holds its result once its pipeline is answered."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queued.append((script, keys, args, future))
        self._schedule(loop)
        return future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        # At the end of this loop turn, so that every call made in it goes together.
        if self._queued and not self._scheduled and len(self._flushing) < self._in_flight:
            self._scheduled = True
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        # A call whose caller was cancelled while it waited is not sent at all.
        queued = [call for call in self._queued if not call[3].done()]
        batch, self._queued = queued[:MAX_BATCH], queued[MAX_BATCH:]
        if batch:
            task = asyncio.create_task(self._run(batch))
            self._flushing.add(task)
            task.add_done_callback(functools.partial(self._sent, batch))
        self._schedule(asyncio.get_running_loop())  # what is left, if there is room

    def _sent(self, batch: list[_Call], task: "asyncio.Task[None]") -> None:
        self._flushing.discard(task)
        # Whatever ended the task (cancelled before it ran, even), no caller waits forever.
        for *_, future in batch:
            if not future.done():
                future.cancel()
        self._schedule(task.get_loop())

    async def _run(self, calls: list[_Call]) -> None:
        if isinstance(self.redis, RedisCluster):
            _settle(calls, await self._results_on_cluster(self.redis, calls))
            return
        pool = self.redis.connection_pool

        async def acquire() -> AbstractConnection:
            return cast(AbstractConnection, await pool.get_connection())  # type: ignore[no-untyped-call]

        route = _Route(acquire, pool.release, self.redis.script_load, self._probe_key)
        _settle(calls, await self._results_on(route, calls))

    async def _results_on_cluster(
        self, cluster: RedisCluster, calls: list[_Call], *, again: bool = True
    ) -> list[Any]:
        """Each call's result (or error), sent in one pipeline per node."""
        try:
            if self._map_stale:
                failed, self._map_stale, self._failed_node = self._failed_node, False, None
                with contextlib.suppress(RedisError):
                    # Not while the cluster is still deciding (a node away, not yet
                    # failed over): the map it had stands, and the nodes that answer
                    # go on answering.
                    await reread_slot_map(cluster, failed)
            await cluster.initialize()  # at once, once it has read the map
            groups: dict[str, tuple[ClusterNode, list[int]]] = {}
            for i, (_, keys, _, _) in enumerate(calls):
                node = cluster.get_node_from_key(keys[0])
                assert node is not None  # the slot's primary, always
                groups.setdefault(node.name, (node, []))[1].append(i)
        except Exception as exc:
            return [exc] * len(calls)
        results: list[Any] = [None] * len(calls)
        answered = await asyncio.gather(
            *(
                self._results_on(
                    self._node_route(cluster, node, calls[at[0]][1][0]), [calls[i] for i in at]
                )
                for node, at in groups.values()
            )
        )
        for (_, at), answers in zip(groups.values(), answered, strict=True):
            for i, answer in zip(at, answers, strict=True):
                results[i] = answer
        moved = [i for i, result in enumerate(results) if isinstance(result, MovedError)]
        if moved and again:
            # Those did not run: their slots are elsewhere now. Once more, on a fresh map.
            self._map_stale = True
            retried = await self._results_on_cluster(
                cluster, [calls[i] for i in moved], again=False
            )
            for i, result in zip(moved, retried, strict=True):
                results[i] = result
        return results

    def _node_route(self, cluster: RedisCluster, node: ClusterNode, key: str) -> _Route:
        async def acquire() -> AbstractConnection:
            connection = node.acquire_connection()
            await node.disconnect_if_needed(connection)  # one the client marked stale
            return connection

        async def release(connection: AbstractConnection) -> None:
            node.release(cast(Connection, connection))

        async def load(lua: str) -> object:
            return await cluster.execute_command("SCRIPT LOAD", lua, target_nodes=node)

        # The probe shares the first call's hash tag (or makes the key its tag): it is
        # written on the same node.
        tag = key[: key.index("}") + 1] if "{" in key and "}" in key else f"{key}:{{{key}}}"
        return _Route(acquire, release, load, f"{tag}:replication-probe", node.name)

    async def _results_on(self, route: _Route, calls: list[_Call]) -> list[Any]:
        """Each call's result (or error), sent in one pipeline on one route."""
        try:
            results = await self._send(route, calls)
        except Exception as exc:
            if route.node is not None and not isinstance(exc, MaxConnectionsError):
                # The node may be gone: the next call reads the map.
                self._map_stale, self._failed_node = True, route.node
            return [exc] * len(calls)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            # Redis does not know a script yet (first use, a restart, SCRIPT FLUSH): those
            # calls did not run, so load the scripts and send exactly them again; an
            # error then is theirs alone.
            again: list[Any]
            try:
                for lua in {calls[i][0].lua for i in missing}:
                    await route.load(lua)
                again = await self._send(route, [calls[i] for i in missing])
            except Exception as exc:
                again = [exc] * len(missing)
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        return results

    async def _send(self, route: _Route, calls: list[_Call]) -> list[Any]:
        """One write of every call (packed by hiredis, in C), then their replies in order."""
        wait = self._wait_replicas > 0 and any(script.durable for script, *_ in calls)
        packed = b"".join(pack_command(script.wire(keys, args)) for script, keys, args, _ in calls)
        if wait:
            packed += _packed(("INCR", route.probe_key)) + self._wait
        connection = await route.acquire()
        self.round_trips += 1
        try:
            await connection.send_packed_command(packed)
            results: list[Any] = []
            for _ in calls:
                try:
                    results.append(await connection.read_response())
                except ResponseError as exc:  # this call's own error; the others stand
                    results.append(exc)
            if wait:
                await connection.read_response()  # the probe's count
                acked = int(await connection.read_response())
                if acked < self._wait_replicas:
                    behind = ReplicasBehind(acked, self._wait_replicas, self._wait_timeout_ms)
                    results = [
                        behind if script.durable and not isinstance(r, Exception) else r
                        for (script, *_), r in zip(calls, results, strict=True)
                    ]
            return results
        except BaseException:
            # Replies may be left unread on the socket: it must not serve anyone else.
            await connection.disconnect()
            raise
        finally:
            await route.release(connection)


def _packed(*commands: tuple[str | int, ...]) -> bytes:
    """Commands packed for the wire, one after another."""
    return b"".join(pack_command(cast(Any, command)) for command in commands)


def _settle(calls: list[_Call], results: list[Any]) -> None:
    """Give each caller its result, or its error."""
    for (*_, future), result in zip(calls, results, strict=True):
        if future.done():
            continue  # its caller was cancelled
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


class Script:
    """One Lua script, called through its batcher."""

    def __init__(self, batcher: ScriptBatcher, lua: str, *, durable: bool = False) -> None:
        self._batcher = batcher
        self.lua = lua
        self.durable = durable
        self.sha = hashlib.sha1(lua.encode()).hexdigest()

    def __call__(
        self, *, keys: Sequence[Any] = (), args: Sequence[Any] = ()
    ) -> "asyncio.Future[Any]":
        """Run the script with these keys and arguments (in the next pipeline)."""
        return self._batcher.call(self, keys, args)

    def wire(self, keys: Sequence[Any], args: Sequence[Any]) -> tuple[Any, ...]:
        """The call as sent."""
        return ("EVALSHA", self.sha, len(keys), *keys, *args)


class PlainCommand:
    """One plain Redis command, called through a batcher as a script is (never unknown
    to Redis, never waited on replicas for: a read)."""

    lua: Final = ""
    durable: Final = False

    def __init__(self, batcher: ScriptBatcher, name: str) -> None:
        self._batcher = batcher
        self.name = name

    def __call__(
        self, *, keys: Sequence[Any] = (), args: Sequence[Any] = ()
    ) -> "asyncio.Future[Any]":
        """Send the command with these keys and arguments (in the next pipeline)."""
        return self._batcher.call(self, keys, args)

    def wire(self, keys: Sequence[Any], args: Sequence[Any]) -> tuple[Any, ...]:
        """The call as sent."""
        return (self.name, *keys, *args)
