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
"""

import asyncio
import functools
import hashlib
from collections.abc import Sequence
from typing import Any, Final

from hiredis import pack_command
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

# A bound on one pipeline, so a burst is written and answered in pieces.
MAX_BATCH: Final = 256

_Call = tuple["Script", Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]


class ReplicasBehind(ConnectionError):
    """Fewer replicas than asked for confirmed a write in time: it is on the primary
    only, and what depends on it must wait (the input is tried again later)."""

    def __init__(self, acked: int, wanted: int, timeout_ms: int) -> None:
        super().__init__(
            f"{acked} of {wanted} Redis replicas confirmed the write within {timeout_ms} ms"
        )


class ScriptBatcher:
    """Runs the scripts registered on it, batching calls into pipelines.

    At most `in_flight` pipelines are out at once; calls made meanwhile wait for the
    next one. Under a light load a call goes at once, alone; under a heavy one the
    pipelines grow with it, and the round trips per call fall.

    With `wait_replicas`, a pipeline holding a call of a `durable` script ends with
    `WAIT`: those calls answer only once that many replicas have the pipeline's writes
    (one WAIT for the whole pipeline), and raise ReplicasBehind if they do not within
    `wait_timeout_ms`.
    """

    def __init__(
        self,
        redis: "Redis",
        *,
        in_flight: int = 2,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ) -> None:
        self._redis = redis
        self._in_flight = in_flight
        self._wait_replicas = wait_replicas
        self._wait_timeout_ms = wait_timeout_ms
        self._queued: list[_Call] = []
        self._scheduled = False
        self._flushing: set[asyncio.Task[None]] = set()
        self.round_trips = 0  # pipelines sent, for tests and curiosity

    def register(self, lua: str, *, durable: bool = False) -> "Script":
        """A script to call as `await script(keys=[...], args=[...])`; a `durable` one's
        writes are on the replicas asked for when it answers."""
        return Script(self, lua, durable=durable)

    def call(
        self, script: "Script", keys: Sequence[Any], args: Sequence[Any]
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
        try:
            results = await self._send(calls)
        except Exception as exc:
            _settle(calls, [exc] * len(calls))
            return
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            # Redis does not know a script yet (first use, a restart, SCRIPT FLUSH): those
            # calls did not run, so load the scripts and send exactly them again; an
            # error then is theirs alone.
            again: list[Any]
            try:
                for lua in {calls[i][0].lua for i in missing}:
                    await self._redis.script_load(lua)
                again = await self._send([calls[i] for i in missing])
            except Exception as exc:
                again = [exc] * len(missing)
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        _settle(calls, results)

    async def _send(self, calls: list[_Call]) -> list[Any]:
        """One write of every call (packed by hiredis, in C), then their replies in order."""
        wait = self._wait_replicas > 0 and any(script.durable for script, *_ in calls)
        packed = b"".join(
            pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))
            for script, keys, args, _ in calls
        )
        if wait:
            wait_command: Any = ("WAIT", self._wait_replicas, self._wait_timeout_ms)
            packed += pack_command(wait_command)
        pool = self._redis.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
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
            await pool.release(connection)


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
