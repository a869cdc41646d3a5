"""The RabbitMQ nodes SAGA_RABBITMQ_URL names (one AMQP URL per node, comma-separated), a
connection to the first of them that answers, and the quorum group size that fits them."""

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

import aio_pika
import aiormq
import structlog

from saga.settings import without_password

log = structlog.get_logger(__name__)

# The queue argument that sets how many nodes hold a new quorum queue (its members). It is
# fixed when the queue is made: RabbitMQ refuses a declare that gives another, or none.
GROUP_SIZE_ARGUMENT: Final = "x-quorum-initial-group-size"
# By default a quorum queue is held by every node named, up to this many: 3 members
# survive the loss of one, and more make every publish wait for more confirmations.
DEFAULT_GROUP_SIZE_CAP: Final = 3
# What means a node does not answer (refused, unreachable, timed out, the handshake
# failed): the next one is tried.
NODE_DOWN: Final = (OSError, TimeoutError, aiormq.exceptions.AMQPError)

T = TypeVar("T")


def node_urls(value: str) -> tuple[str, ...]:
    """The URLs of a comma-separated list, trimmed, in their order."""
    return tuple(url for url in (part.strip() for part in value.split(",")) if url)


def group_size(asked: int | None, nodes: int) -> int | None:
    """The group size new quorum queues are declared with: the one asked, else every node
    named up to 3; None (no argument: the broker's own default) for one node and nothing
    asked, so that queues made before clusters were supported are taken as they are."""
    if asked is not None:
        return asked
    if nodes <= 1:
        return None
    return min(nodes, DEFAULT_GROUP_SIZE_CAP)


async def first_answering(
    urls: Sequence[str], connect: Callable[[str], Awaitable[T]], *, start: int = 0
) -> tuple[int, T]:
    """Connect to the first node that answers, from `urls[start]` on round the list: its
    index and the connection. A node that does not answer is logged and the next one
    tried; when none answers, the last one's error is raised."""
    if not urls:
        raise ValueError("no RabbitMQ URL given")
    *others, last = [(start + step) % len(urls) for step in range(len(urls))]
    for index in others:
        try:
            return index, await connect(urls[index])
        except NODE_DOWN as exc:
            log.warning(
                "RabbitMQ node does not answer, trying the next",
                node=without_password(urls[index]),
                error=repr(exc),
            )
    return last, await connect(urls[last])


async def connect_pika(urls: str, **options: Any) -> aio_pika.abc.AbstractConnection:
    """An aio-pika connection to the first of the nodes `urls` names that answers (for
    the tools that open a connection of their own: dead letters, namespaces, checks)."""

    async def connect(url: str) -> aio_pika.abc.AbstractConnection:
        connection: aio_pika.abc.AbstractConnection = await aio_pika.connect(url, **options)
        return connection

    _, connection = await first_answering(node_urls(urls), connect)
    return connection
