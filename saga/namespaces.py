"""Namespaces: what an empty answer in one that shows no sign of life says, and removing
one (every Redis key under it, and its queues and exchanges)."""

from collections.abc import Iterable

import aio_pika
import aiormq

from contracts.topology import Topology
from saga.amqp_nodes import connect_pika
from saga.connections import AnyRedis
from saga.rabbit import delete_topology
from saga.registry import participants_key


def nothing_runs(namespace: str) -> str:
    """The words every empty answer of a namespace that shows no sign of life ends with:
    a mistyped SAGA_NAMESPACE is the likely cause."""
    return f"nothing runs in namespace {namespace!r} (is SAGA_NAMESPACE right?)"


async def delete_keys(redis: AnyRedis, namespace: str, *, batch: int = 500) -> int:
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


class NamespaceInUse(Exception):
    """Something still consumes a queue of the namespace: its processes run."""


async def delete_namespace(
    redis: AnyRedis,
    rabbitmq_url: str,
    namespace: str,
    *,
    participants: Iterable[str] = (),
    unless_in_use: bool = False,
) -> int:
    """Delete the namespace's keys, queues and exchanges (those of `participants` and of
    the participants it knows of: named by its definitions, or run on the SDK there); how
    many keys. `unless_in_use`: first make sure nothing consumes its queues
    (NamespaceInUse, and nothing deleted, if something does)."""
    named = {str(p) for p in await redis.smembers(participants_key(redis, namespace))}
    topology = Topology(namespace).with_participants(sorted(named | set(participants)))
    async with await connect_pika(rabbitmq_url, timeout=10) as connection:
        if unless_in_use:
            busy = {q: n for q in topology.all_queues() if (n := await _consumers(connection, q))}
            if busy:
                held = ", ".join(f"{q} ({n})" for q, n in sorted(busy.items()))
                raise NamespaceInUse(
                    f"namespace {namespace!r} is in use: consumers on {held}; "
                    "stop its processes first"
                )
        deleted = await delete_keys(redis, namespace)
        await delete_topology(await connection.channel(), topology)
    return deleted


async def _consumers(connection: aio_pika.abc.AbstractConnection, queue: str) -> int:
    """How many consumers a queue has (0 for a queue that does not exist)."""
    channel = await connection.channel()  # a missing queue closes the channel it is asked on
    try:
        declared = await channel.declare_queue(queue, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return 0
    await channel.close()
    return int(declared.declaration_result.consumer_count or 0)
