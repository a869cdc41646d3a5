"""The RabbitMQ transport: topology, confirmed publishing, consuming with a named ack policy."""

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from contracts.envelope import Envelope
from contracts.topology import ORCHESTRATOR_ROUTING_KEY, PARTICIPANTS, Participant, Topology

log = structlog.get_logger(__name__)

DEAD_REASON_HEADER: Final = "x-saga-dead-reason"
DEAD_QUEUE_HEADER: Final = "x-saga-source-queue"
# A message whose handler raised on this many redeliveries goes to the dead letters,
# with the last error as its reason. The queue's own x-delivery-limit, one higher, is a
# backstop for a handler that never returns at all.
DELIVERY_LIMIT: Final = 10


class TransportUnavailable(ConnectionError):
    """Not connected to RabbitMQ (yet, or any more)."""


# Errors that mean "a server is away", not "this message is bad": the handler is run
# again, with back-off, for as long as it takes; the message is neither nacked nor lost.
INFRASTRUCTURE_ERRORS: Final = (
    TransportUnavailable,
    RedisConnectionError,
    RedisTimeoutError,
    aio_pika.exceptions.AMQPConnectionError,
    aio_pika.exceptions.ChannelInvalidStateError,
    aio_pika.exceptions.ChannelClosed,
    ConnectionError,
    asyncio.TimeoutError,
)


# The broker refused or returned a published message (a nack, or no queue took it).
PUBLISH_ERRORS: Final = (aio_pika.exceptions.DeliveryError,)


@dataclass(frozen=True)
class Delivery:
    """A message as a handler sees it."""

    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    redelivered: bool = False

    @property
    def delivery_count(self) -> int:
        """How often the broker delivered it before (quorum queues count)."""
        return int(self.headers.get("x-delivery-count") or 0)


@dataclass(frozen=True)
class Ack:
    """The message's effect is durable: acknowledge it."""


@dataclass(frozen=True)
class DeadLetter:
    """The message can never be processed: park it in the dead letters with the reason."""

    reason: str


Outcome = Ack | DeadLetter
ACK: Final = Ack()
Handler = Callable[[Delivery], Awaitable[Outcome]]


class RabbitTransport:
    """One robust connection, a confirmed publishing channel, and a channel per consumer."""

    def __init__(self, url: str, topology: Topology, *, prefetch: int = 32) -> None:
        self.topology = topology
        self._url = url
        self._prefetch = prefetch
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._consumers: list[tuple[AbstractQueue, str]] = []
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def connect(self) -> None:
        """Connect (reconnecting by itself from then on) and declare the whole topology."""
        connection = await aio_pika.connect_robust(self._url, timeout=10)
        # on_return_raises: a message no queue takes is an error, not a silent success.
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await declare_topology(channel, self.topology)
        for name in self.topology.all_exchanges():
            self._exchanges[name] = await channel.get_exchange(name, ensure=False)
        self._connection, self._channel = connection, channel

    async def keep_connecting(self, *, retry_every: float = 2.0) -> None:
        """Connect, retrying until the broker answers (for processes that start without it)."""
        while True:
            try:
                await self.connect()
                log.info("connected to RabbitMQ")
                return
            except INFRASTRUCTURE_ERRORS as exc:
                log.warning("RabbitMQ unreachable, retrying", error=repr(exc), retry_in=retry_every)
                await asyncio.sleep(retry_every)

    @property
    def connected(self) -> bool:
        """Connected right now (false while the robust connection is reconnecting)."""
        return self._connection is not None and self._connection.connected.is_set()

    async def close(self) -> None:
        """Close the connection; consumers stop, unacked messages go back to their queues."""
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def publish_command(self, participant: Participant, envelope: Envelope) -> None:
        """Publish a command to a participant and wait for the broker's confirm."""
        await self._publish(
            self.topology.commands_exchange, participant, envelope.to_bytes(), envelope
        )

    async def publish_reply(self, envelope: Envelope) -> None:
        """Publish a reply to the orchestrator and wait for the broker's confirm."""
        await self._publish(
            self.topology.replies_exchange, ORCHESTRATOR_ROUTING_KEY, envelope.to_bytes(), envelope
        )

    async def dead_letter(
        self, body: bytes, *, reason: str, queue: str, headers: dict[str, Any]
    ) -> None:
        """Park a message in the namespace's dead-letter queue, its reason in a header."""
        exchange = self._exchange(self.topology.dead_letter_exchange)
        message = aio_pika.Message(
            body,
            message_id=uuid.uuid4().hex,  # the dead letter's own id, for `saga dlq replay`
            headers={**headers, DEAD_REASON_HEADER: reason[:500], DEAD_QUEUE_HEADER: queue},
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await exchange.publish(message, routing_key=queue, mandatory=True)

    def _exchange(self, name: str) -> AbstractExchange:
        if name not in self._exchanges:
            raise TransportUnavailable("not connected to RabbitMQ")
        return self._exchanges[name]

    async def _publish(
        self, exchange_name: str, routing_key: str, body: bytes, envelope: Envelope
    ) -> None:
        exchange = self._exchange(exchange_name)
        message = aio_pika.Message(
            body,
            message_id=envelope.message_id,
            correlation_id=envelope.correlation_id,
            type=envelope.type,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        # mandatory: a message no queue would take is returned as an error, not dropped.
        await exchange.publish(message, routing_key=routing_key, mandatory=True, timeout=10)

    async def consume(self, queue_name: str, handler: Handler) -> None:
        """Deliver the queue's messages to `handler`; its Outcome decides ack or dead letter."""
        assert self._connection is not None, "connect() first"
        channel = await self._connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=self._prefetch)
        # Declared (not merely looked up) so that the robust channel re-declares it and
        # restores this consumer after the broker comes back.
        queue: AbstractQueue = await channel.declare_queue(
            queue_name, durable=True, arguments=work_queue_arguments(self.topology)
        )

        async def on_message(message: AbstractIncomingMessage) -> None:
            self._in_flight += 1
            self._idle.clear()
            try:
                await self._settle(queue_name, message, handler)
            finally:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.set()

        tag = await queue.consume(on_message, no_ack=False)
        self._consumers.append((queue, tag))

    async def stop_consuming(self, *, grace: float = 10.0) -> None:
        """Take no new messages and let the ones in hand finish (for a clean shutdown)."""
        for queue, tag in self._consumers:
            with contextlib.suppress(*INFRASTRUCTURE_ERRORS):
                await queue.cancel(tag)
        self._consumers.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)

    async def _settle(
        self, queue_name: str, message: AbstractIncomingMessage, handler: Handler
    ) -> None:
        delivery = Delivery(
            body=message.body,
            headers=dict(message.headers or {}),
            redelivered=bool(message.redelivered),
        )
        delay = 0.1
        while True:
            if message.channel.is_closed:
                # The broker connection dropped: it redelivers the message to whoever
                # consumes next, so this copy is let go.
                log.warning("delivery abandoned with its channel", queue=queue_name)
                return
            try:
                outcome = await handler(delivery)
                if isinstance(outcome, DeadLetter):
                    await self.dead_letter(
                        message.body,
                        reason=outcome.reason,
                        queue=queue_name,
                        headers=delivery.headers,
                    )
                    log.warning("message dead-lettered", queue=queue_name, reason=outcome.reason)
                await message.ack()
                return
            except INFRASTRUCTURE_ERRORS as exc:
                # A server is away: keep the message and run the handler again when it is
                # back; idempotency makes the second run harmless.
                log.warning(
                    "server unavailable, retrying message",
                    queue=queue_name,
                    error=repr(exc),
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception as exc:
                # A bug or an unforeseen input: give the message back, until it has failed
                # too often; then park it in the dead letters with the error as its reason.
                if delivery.delivery_count >= DELIVERY_LIMIT:
                    reason = f"handler failed {delivery.delivery_count + 1} times: {exc!r}"
                    await self.dead_letter(
                        message.body, reason=reason, queue=queue_name, headers=delivery.headers
                    )
                    log.error("message dead-lettered", queue=queue_name, reason=reason)
                    await message.ack()
                    return
                log.exception("handler failed, message requeued", queue=queue_name, error=repr(exc))
                await asyncio.sleep(0.5)
                if not message.channel.is_closed:
                    await message.nack(requeue=True)
                return


def work_queue_arguments(topology: Topology) -> dict[str, Any]:
    """The arguments of the orchestrator's and the participants' queues."""
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": topology.dead_letter_exchange,
        "x-delivery-limit": DELIVERY_LIMIT + 1,
    }


async def declare_topology(channel: AbstractChannel, topology: Topology) -> None:
    """Declare exchanges, quorum queues and bindings; safe to run from every process."""
    commands = await channel.declare_exchange(
        topology.commands_exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
    replies = await channel.declare_exchange(
        topology.replies_exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
    dead = await channel.declare_exchange(
        topology.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
    )
    dead_queue = await channel.declare_queue(
        topology.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead_queue.bind(dead)
    work_args = work_queue_arguments(topology)
    orchestrator = await channel.declare_queue(
        topology.orchestrator_queue, durable=True, arguments=work_args
    )
    await orchestrator.bind(replies, routing_key=ORCHESTRATOR_ROUTING_KEY)
    for participant in PARTICIPANTS:
        queue = await channel.declare_queue(
            topology.participant_queue(participant), durable=True, arguments=work_args
        )
        await queue.bind(commands, routing_key=participant)


async def delete_topology(channel: AbstractChannel, topology: Topology) -> None:
    """Remove every queue and exchange of a namespace (tests and `saga` clean-up)."""
    for name in topology.all_queues():
        await channel.queue_delete(name)
    for name in topology.all_exchanges():
        await channel.exchange_delete(name)
