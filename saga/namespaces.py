"""Namespaces: what an empty answer in one that shows no sign of life says, and removing
one (every Redis key under it, and its queues and exchanges)."""

import aio_pika
from redis.asyncio import Redis

from contracts.topology import Topology
from saga.rabbit import delete_topology
from saga.registry import participants_key


def nothing_runs(namespace: str) -> str:
    """The words every empty answer of a namespace that shows no sign of life ends with:
    a mistyped SAGA_NAMESPACE is the likely cause."""
    return f"nothing runs in namespace {namespace!r} (is SAGA_NAMESPACE right?)"


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
    """Delete the namespace's keys, queues and exchanges (those of the participants its
    definitions named too)."""
    named = [str(p) for p in await redis.smembers(participants_key(namespace))]
    await delete_keys(redis, namespace)
    topology = Topology(namespace).with_participants(named)
    async with await aio_pika.connect(rabbitmq_url, timeout=10) as connection:
        await delete_topology(await connection.channel(), topology)
