"""Removing a namespace: every Redis key under it, and its queues and exchanges."""

import aio_pika
from redis.asyncio import Redis

from contracts.topology import Topology
from saga.rabbit import delete_topology


async def delete_keys(redis: "Redis", namespace: str, *, batch: int = 500) -> int:
    """Delete every key of the namespace, in batches; returns how many."""
    deleted = 0
    keys: list[str] = []
    async for key in redis.scan_iter(match=f"{namespace}:*", count=1000):
        keys.append(key)
        if len(keys) >= batch:
            deleted += await redis.unlink(*keys)
            keys.clear()
    if keys:
        deleted += await redis.unlink(*keys)
    return deleted


async def delete_namespace(redis: "Redis", rabbitmq_url: str, namespace: str) -> None:
    """Delete the namespace's keys, queues and exchanges."""
    await delete_keys(redis, namespace)
    async with await aio_pika.connect(rabbitmq_url, timeout=10) as connection:
        await delete_topology(await connection.channel(), Topology(namespace))
