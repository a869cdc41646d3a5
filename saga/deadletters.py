"""The dead-letter queue of a namespace: list what is parked and why, replay it, purge it."""

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from pydantic import BaseModel

from contracts.topology import Topology
from saga.transport import DEAD_QUEUE_HEADER, DEAD_REASON_HEADER

# Headers of ours, and the broker's, that say why a message is dead; a replayed message
# goes back without them.
_DEATH_HEADERS = (
    DEAD_REASON_HEADER,
    DEAD_QUEUE_HEADER,
    "x-death",
    "x-first-death-reason",
    "x-first-death-queue",
    "x-first-death-exchange",
    "x-last-death-reason",
    "x-last-death-queue",
    "x-last-death-exchange",
    "x-delivery-count",
)


class ParkedMessage(BaseModel):
    """One parked message, as an operator sees it."""

    id: str
    reason: str
    source_queue: str | None
    type: str | None
    saga_id: str | None
    dead_at: datetime | None
    body: str


def describe(message: AbstractIncomingMessage) -> ParkedMessage:
    """What a parked message is, where it came from, and why it is here."""
    headers: dict[str, Any] = dict(message.headers or {})
    deaths = headers.get("x-death") or []
    first_death: dict[str, Any] = deaths[0] if deaths and isinstance(deaths[0], dict) else {}
    reason = headers.get(DEAD_REASON_HEADER) or _text(first_death.get("reason")) or "unknown"
    source = headers.get(DEAD_QUEUE_HEADER) or _text(first_death.get("queue"))
    envelope = _envelope_fields(message.body)
    return ParkedMessage(
        id=message.message_id or hashlib.sha256(message.body).hexdigest()[:32],
        reason=str(reason),
        source_queue=str(source) if source else None,
        type=envelope.get("type") or message.type,
        saga_id=envelope.get("saga_id"),
        dead_at=message.timestamp,
        body=message.body.decode("utf-8", errors="replace")[:2000],
    )


class DeadLetterQueue:
    """Operations on `<namespace>.dead-letters` over one AMQP connection."""

    def __init__(self, url: str, topology: Topology) -> None:
        self._url = url
        self._topology = topology

    async def _queue(
        self,
    ) -> tuple[aio_pika.abc.AbstractConnection, AbstractChannel, AbstractQueue]:
        connection = await aio_pika.connect(self._url, timeout=10)
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        queue = await channel.declare_queue(self._topology.dead_letter_queue, passive=True)
        return connection, channel, queue

    async def peek(self, *, limit: int) -> list[ParkedMessage]:
        """Up to `limit` parked messages, oldest first; they stay parked."""
        connection, _, queue = await self._queue()
        async with connection:
            found: list[ParkedMessage] = []
            while len(found) < limit:
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                found.append(describe(message))
            # Closing the connection without acking puts them all back.
        return found

    async def replay(self, wanted: Callable[[ParkedMessage], bool]) -> list[ParkedMessage]:
        """Send the parked messages `wanted` picks back to the queues they came from."""
        connection, channel, queue = await self._queue()
        replayed = []
        async with connection:
            seen: set[str] = set()
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                letter = describe(message)
                if letter.id in seen:
                    break  # went round once: the rest were looked at already
                seen.add(letter.id)
                if not wanted(letter) or letter.source_queue is None:
                    continue  # left unacked: back in the queue when the connection closes
                headers = {
                    k: v for k, v in (message.headers or {}).items() if k not in _DEATH_HEADERS
                }
                await channel.default_exchange.publish(
                    aio_pika.Message(
                        message.body,
                        headers=headers,
                        message_id=message.message_id,
                        correlation_id=message.correlation_id,
                        type=message.type,
                        content_type=message.content_type,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=letter.source_queue,
                    mandatory=True,
                )
                await message.ack()
                replayed.append(letter)
        return replayed

    async def purge(self) -> int:
        """Drop every parked message; returns how many there were."""
        connection, _, queue = await self._queue()
        async with connection:
            result = await queue.purge()
        return int(getattr(result, "message_count", 0) or 0)


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return None if value is None else str(value)


def _envelope_fields(body: bytes) -> dict[str, str]:
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: str(data[k]) for k in ("type", "saga_id") if isinstance(data.get(k), str)}
