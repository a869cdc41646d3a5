"""The hand-written flow `saga bench --baseline` measures beside the orchestrator.

What a careful engineer would write by hand for a three-step saga on the same servers,
with nothing of this project in it: an orchestrator and three participants in this
process, each on its own connection; quorum queues (as the real system uses), persistent
messages, publisher confirms and manual acks; one Redis write per command (the
participant's effect) and one Lua step per reply (the orchestrator's state change). No
event log, no outbox, no timers, no retries: the floor the real system is measured
against, not a system anyone should run.
"""

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from saga.amqp_nodes import connect_pika
from saga.connections import AnyRedis

STEPS: Final = 4

Handler = Callable[[AbstractIncomingMessage], Awaitable[None]]

# Advance a saga from step ARGV[1] - 1 to ARGV[1]; 0 if it was not there (a duplicate).
_ADVANCE: Final = """
if tonumber(redis.call('HGET', KEYS[1], 'step') or '-1') ~= tonumber(ARGV[1]) - 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'step', ARGV[1])
return 1
"""


@dataclass(frozen=True)
class BaselineRun:
    """What one run of the hand-written flow measured."""

    completed: int
    seconds: float
    latencies_ms: list[float]
    cpu_seconds: float


async def run_baseline(
    url: str, redis: AnyRedis, *, sagas: int, concurrency: int, idle_timeout: float = 60
) -> BaselineRun:
    """Run `sagas` three-step sagas with `concurrency` in flight; clean up after."""
    prefix = f"bench-baseline-{uuid.uuid4().hex[:10]}"
    replies, *commands = [f"{prefix}.orchestrator", *(f"{prefix}.step{i}" for i in range(STEPS))]
    advance = redis.register_script(_ADVANCE)
    connections: list[AbstractConnection] = []
    finished: dict[str, asyncio.Future[float]] = {}

    async def endpoint(queue: str | None, handle: Handler | None) -> AbstractChannel:
        """A connection of its own: a confirmed channel to publish on, and a consumer."""
        connection = await connect_pika(url)
        connections.append(connection)
        if queue is not None and handle is not None:
            consuming = await connection.channel(publisher_confirms=False)
            await consuming.set_qos(prefetch_count=32)
            declared = await consuming.declare_queue(queue, durable=True, passive=True)
            await declared.consume(handle, no_ack=False)
        return await connection.channel(publisher_confirms=True)

    async def on_reply(message: AbstractIncomingMessage) -> None:
        saga_id, step = _read(message.body)
        if await advance(keys=[f"{prefix}:{saga_id}"], args=[step + 1]):
            if step + 1 < STEPS:
                await _publish(orchestrator, commands[step + 1], saga_id, step + 1)
            elif not finished[saga_id].done():
                finished[saga_id].set_result(time.monotonic())
        await message.ack()

    def participant(index: int) -> Handler:
        async def on_command(message: AbstractIncomingMessage) -> None:
            saga_id, step = _read(message.body)
            await redis.set(f"{prefix}:{saga_id}:{step}", "done")
            await _publish(channels[index], replies, saga_id, step)
            await message.ack()

        return on_command

    try:
        setup = await endpoint(None, None)
        for name in (replies, *commands):
            await setup.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        orchestrator = await endpoint(replies, on_reply)
        channels = [await endpoint(commands[i], participant(i)) for i in range(STEPS)]
        slots = asyncio.Semaphore(concurrency)

        async def one_saga() -> float:
            async with slots:
                saga_id = uuid.uuid4().hex
                finished[saga_id] = asyncio.get_running_loop().create_future()
                began = time.monotonic()
                await redis.hset(f"{prefix}:{saga_id}", "step", 0)
                await _publish(setup, commands[0], saga_id, 0)
                return (await asyncio.wait_for(finished[saga_id], idle_timeout) - began) * 1000

        cpu_before, began = time.process_time(), time.monotonic()
        results = await asyncio.gather(*(one_saga() for _ in range(sagas)), return_exceptions=True)
        seconds, cpu = time.monotonic() - began, time.process_time() - cpu_before
        latencies = sorted(r for r in results if isinstance(r, float))
        return BaselineRun(len(latencies), seconds, latencies, cpu)
    finally:
        for connection in connections:
            await connection.close()
        async with await connect_pika(url) as connection:
            cleanup = await connection.channel()
            for name in (replies, *commands):
                await cleanup.queue_delete(name)
        batch = [key async for key in redis.scan_iter(match=f"{prefix}:*", count=1000)]
        for i in range(0, len(batch), 1000):
            await redis.delete(*batch[i : i + 1000])


def _read(body: bytes) -> tuple[str, int]:
    data = json.loads(body)
    return str(data["saga_id"]), int(data["step"])


async def _publish(channel: AbstractChannel, queue: str, saga_id: str, step: int) -> None:
    """A persistent message, published and confirmed."""
    body = json.dumps({"saga_id": saga_id, "step": step}).encode()
    message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
    await channel.default_exchange.publish(message, routing_key=queue)
