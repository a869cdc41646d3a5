"""The dead-letter queue of a namespace: list what is parked and why, replay it, purge it.

Every message, whatever its body or headers, lists with a safe preview. A dead letter's
id is the `x-saga-dead-letter-id` header it was first parked with; a message parked
without one (by a version before it, or by RabbitMQ on a message never parked before) is
named by its message_id, or else by a hash of its body, and a replay gives it that id in
the header, so the id stays the same for the message's life.
"""

import hashlib
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage, AbstractQueue
from pydantic import BaseModel, field_serializer

from contracts.topology import Topology
from saga.amqp_errors import AMQP_OUTAGES
from saga.amqp_nodes import connect_pika
from saga.clock import utc_text
from saga.namespaces import nothing_runs
from saga.rabbit import encodable
from saga.safetext import as_text, preview
from saga.transport import (
    DEAD_ID_HEADER,
    DEAD_QUEUE_HEADER,
    DEAD_REASON_HEADER,
    TransportUnavailable,
    is_dead_letter_id,
)

PREVIEW_BYTES: Final = 1024
# The type and saga of a larger body are not looked for: an envelope is far smaller.
ENVELOPE_BYTES: Final = 1024 * 1024
_FIELD_BYTES: Final = 200

# Headers of ours, and the broker's, that say why a message is dead; a replayed message
# goes back without them (its dead-letter id stays).
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
# Why RabbitMQ dead-letters a message (the x-death reason), in words.
_BROKER_REASONS = {
    "delivery_limit": "given back more often than the queue's x-delivery-limit",
    "rejected": "a consumer rejected it",
    "expired": "its time to live ran out",
    "maxlen": "its queue was full",
}


class ParkedMessage(BaseModel):
    """One parked message, as an operator sees it: every text is safe to print."""

    id: str
    queue: str | None  # the queue it came from, and goes back to on replay
    reason: str
    at: datetime | None  # when it was parked, in UTC
    type: str | None
    saga_id: str | None
    size: int  # of the body, in bytes
    preview: str  # the body's start: at most PREVIEW_BYTES of UTF-8, nothing escaped raw

    @field_serializer("at")
    def _iso(self, at: datetime | None) -> str | None:
        return None if at is None else utc_text(at, seconds=True)


def describe(message: AbstractIncomingMessage) -> ParkedMessage:
    """What a parked message is, where it came from, and why it is here."""
    return describe_parked(
        message.body,
        dict(message.headers or {}),
        message_id=message.message_id,
        message_type=message.type,
        timestamp=message.timestamp,
    )


def describe_parked(
    body: bytes,
    headers: Mapping[str, Any],
    *,
    message_id: object = None,
    message_type: object = None,
    timestamp: object = None,
) -> ParkedMessage:
    """A parked message described from its parts, whatever they hold."""
    death = _last_death(headers.get("x-death"))
    ours = headers.get(DEAD_REASON_HEADER) is not None
    if ours:
        reason: object = headers[DEAD_REASON_HEADER]
        source: object = headers.get(DEAD_QUEUE_HEADER)
        at: object = timestamp
    elif death:
        why = death.get("reason")
        reason = f"dead-lettered by RabbitMQ: {_text(why)}"
        if isinstance(why, str) and why in _BROKER_REASONS:
            reason = f"{reason} ({_BROKER_REASONS[why]})"
        source, at = death.get("queue"), death.get("time")
    else:
        reason, source, at = "unknown", headers.get(DEAD_QUEUE_HEADER), timestamp
    fields = _envelope_fields(body)
    kind = fields.get("type", message_type)
    return ParkedMessage(
        id=dead_letter_id(headers, message_id, body),
        queue=_text(source) if isinstance(source, str | bytes | bytearray) and source else None,
        reason=as_text(reason, limit=PREVIEW_BYTES),
        at=_when(at),
        type=as_text(kind, limit=_FIELD_BYTES) if isinstance(kind, str) else None,
        saga_id=as_text(fields["saga_id"], limit=_FIELD_BYTES) if "saga_id" in fields else None,
        size=len(body),
        preview=preview(body, limit=PREVIEW_BYTES),
    )


def dead_letter_id(headers: Mapping[str, Any], message_id: object, body: bytes) -> str:
    """The id a parked message goes by: its header, else its message_id, else its body's hash."""
    given = headers.get(DEAD_ID_HEADER)
    if is_dead_letter_id(given):
        return str(given)
    if is_dead_letter_id(message_id):
        return str(message_id)
    return hashlib.sha256(body).hexdigest()[:32]


class DeadLetterQueueMissing(LookupError):
    """The namespace has no dead-letter queue: nothing of it was ever set up."""


class ReplayRunning(RuntimeError):
    """Another replay of the namespace's dead letters is under way."""


class ReplayInterrupted(RuntimeError):
    """The connection was lost during a replay; `sent` were sent back before it, the rest
    are parked still (the one in hand then may have been sent as well)."""

    def __init__(self, sent: list[ParkedMessage], error: BaseException) -> None:
        super().__init__(f"{error!r}")
        self.sent = sent


@dataclass(frozen=True)
class Replay:
    """What a replay did."""

    sent: list[ParkedMessage]
    # Left parked, and why: they name no queue, or theirs refused them (it is gone, or full).
    refused: list[tuple[ParkedMessage, str]]


def replay_lock_queue(topology: Topology) -> str:
    """The exclusive queue a replay holds while it runs (no participant's queue can have
    this name: participant names have no dots)."""
    return f"{topology.dead_letter_queue}.replaying"


class DeadLetterQueue:
    """Operations on `<namespace>.dead-letters`, each over a connection of its own."""

    def __init__(self, url: str, topology: Topology) -> None:
        self._url = url
        self._topology = topology

    async def _connect(self) -> AbstractConnection:
        # Named, so that an operator (and a test) can tell this connection in the broker.
        name = f"saga dlq ({self._topology.namespace})"
        return await connect_pika(
            self._url, timeout=10, client_properties={"connection_name": name}
        )

    async def _parked(self, connection: AbstractConnection) -> tuple[AbstractQueue, int]:
        """The dead-letter queue, and how many messages wait in it now."""
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        name = self._topology.dead_letter_queue
        try:
            queue = await channel.declare_queue(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            raise DeadLetterQueueMissing(
                f"no dead-letter queue {name!r}: {nothing_runs(self._topology.namespace)}"
            ) from exc
        declared = queue.declaration_result
        return queue, int(declared.message_count or 0)

    async def depth(self) -> int:
        """How many messages are parked now."""
        connection = await self._connect()
        async with connection:
            _, parked = await self._parked(connection)
        return parked

    async def peek(self, *, limit: int) -> list[ParkedMessage]:
        """Up to `limit` parked messages, in the queue's order; they stay parked."""
        connection = await self._connect()
        async with connection:
            queue, parked = await self._parked(connection)
            found: list[ParkedMessage] = []
            # Only those parked now: each is held unacked until the connection closes,
            # so none is seen twice, and those parked meanwhile wait behind them.
            for _ in range(min(limit, parked)):
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                found.append(describe(message))
        return found

    async def replay(self, wanted: Callable[[ParkedMessage], bool]) -> Replay:
        """Send each message parked when the replay starts that `wanted` picks back to the
        queue it came from, once: one that fails and is parked again meanwhile waits
        behind those, keeps its id, and is not sent again in this replay.

        Each is acked only once the broker confirmed its copy, so a lost connection loses
        nothing (ReplayInterrupted says what was sent). Only one replay of a namespace
        runs at a time (ReplayRunning)."""
        connection = await self._connect()
        sent: list[ParkedMessage] = []
        sent_ids: set[str] = set()
        refused: list[tuple[ParkedMessage, str]] = []
        async with connection:
            await self._lock(connection)
            queue, parked = await self._parked(connection)
            try:
                for _ in range(parked):
                    message = await queue.get(no_ack=False, fail=False)
                    if message is None:
                        break
                    letter = describe(message)
                    # Left unacked, a message is parked still when the connection closes.
                    if letter.id in sent_ids or not wanted(letter):
                        continue  # sent already (this is its copy, parked again), or not asked for
                    problem = await self._send_back(queue, message, letter)
                    if problem is not None:
                        refused.append((letter, problem))
                        continue
                    await message.ack()
                    sent.append(letter)
                    sent_ids.add(letter.id)
            except (TransportUnavailable, *AMQP_OUTAGES) as exc:
                raise ReplayInterrupted(sent, exc) from exc
        return Replay(sent, refused)

    async def _lock(self, connection: AbstractConnection) -> None:
        """Hold the namespace's replay lock: an exclusive queue, which the broker lets one
        connection have and drops with it (however the replay ends)."""
        channel = await connection.channel()
        try:
            await channel.declare_queue(
                replay_lock_queue(self._topology), exclusive=True, auto_delete=True
            )
        except aiormq.exceptions.ChannelLockedResource as exc:
            raise ReplayRunning(
                f"another dead-letter replay is running in namespace {self._topology.namespace!r}"
            ) from exc

    async def _send_back(
        self, queue: AbstractQueue, message: AbstractIncomingMessage, letter: ParkedMessage
    ) -> str | None:
        """Publish a copy of a parked message to its queue; what went wrong, if it could
        not go."""
        if letter.queue is None:
            return "it names no queue it came from"
        headers = {k: v for k, v in (message.headers or {}).items() if k not in _DEATH_HEADERS}
        headers[DEAD_ID_HEADER] = letter.id  # given here to a message parked without one
        try:
            await queue.channel.default_exchange.publish(
                aio_pika.Message(
                    message.body,
                    headers=encodable(headers),
                    message_id=message.message_id,
                    correlation_id=message.correlation_id,
                    type=message.type,
                    content_type=message.content_type,
                    content_encoding=message.content_encoding,
                    app_id=message.app_id,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=letter.queue,
                mandatory=True,
                timeout=10,
            )
        except aio_pika.exceptions.PublishError:
            return f"no queue {letter.queue!r} takes it"
        except aio_pika.exceptions.DeliveryError as exc:
            return f"queue {letter.queue!r} refused it ({exc})"
        return None

    async def remove(self, ids: Collection[str]) -> list[ParkedMessage]:
        """Drop the parked messages of these ids (those parked now), and only those: the
        others stay parked, in their order. The ones it dropped. It holds the replay lock
        (ReplayRunning while a replay runs: the messages a replay holds are not in the
        queue to be found)."""
        wanted = set(ids)
        removed: list[ParkedMessage] = []
        connection = await self._connect()
        async with connection:
            await self._lock(connection)
            queue, parked = await self._parked(connection)
            # The others are held unacked until the connection closes, so none is seen
            # twice; closing gives them back.
            for _ in range(parked):
                if len(removed) == len(wanted):
                    break
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                letter = describe(message)
                if letter.id in wanted:
                    await message.ack()
                    removed.append(letter)
        return removed

    async def purge(self) -> int:
        """Drop every parked message; returns how many there were."""
        connection = await self._connect()
        async with connection:
            queue, _ = await self._parked(connection)
            result = await queue.purge()
        return int(getattr(result, "message_count", 0) or 0)


def _last_death(value: object) -> dict[str, Any]:
    """The latest of RabbitMQ's deaths of a message (x-death lists the latest first)."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return value[0]
    return {}


def _text(value: object) -> str:
    return as_text(value, limit=_FIELD_BYTES)


def _when(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    # AMQP timestamps are seconds since the epoch; a naive one is UTC.
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _envelope_fields(body: bytes) -> dict[str, str]:
    """The envelope's type and saga_id, where the body is one and they are strings."""
    if len(body) > ENVELOPE_BYTES:
        return {}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python goes
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: data[k] for k in ("type", "saga_id") if isinstance(data.get(k), str)}
