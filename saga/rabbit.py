"""The RabbitMQ transport, on aiormq: topology, confirmed publishing, consuming with the
ack policy, and reconnecting."""

import asyncio
import contextlib
import functools
import uuid
from datetime import UTC, datetime
from typing import Any, Final

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractChannel
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from contracts.envelope import Envelope
from contracts.topology import ORCHESTRATOR_ROUTING_KEY, PARTICIPANTS, Participant, Topology
from saga.acks import AckBatcher
from saga.transport import (
    DEAD_QUEUE_HEADER,
    DEAD_REASON_HEADER,
    DELIVERY_LIMIT,
    INFRASTRUCTURE_ERRORS,
    PUBLISH_ERRORS,
    Ack,
    DeadLetter,
    Delivery,
    Handler,
    Outcome,
    Requeue,
    TransportUnavailable,
    run_handler,
)

log = structlog.get_logger(__name__)

PERSISTENT: Final = int(aio_pika.DeliveryMode.PERSISTENT)


class RabbitTransport:
    """One AMQP connection with a confirmed publishing channel and a channel per consumer,
    made again whenever it, or any of its channels, is lost.

    Built on aiormq itself: aio-pika's robust connection wraps every delivery in an
    IncomingMessage and a second task and every publish in a Message, which under load
    was a tenth of a worker's CPU. What the robust connection did for us is done here in
    one way for every loss: the whole connection is dropped and made again, the topology
    declared again and every consumer started again. Deliveries in hand went back to
    their queues with the old connection and come again (and are recognised as the
    duplicates they are); a publish meanwhile fails with TransportUnavailable, and the
    outbox keeps its command.
    """

    def __init__(
        self, url: str, topology: Topology, *, prefetch: int = 32, reconnect_every: float = 2.0
    ) -> None:
        self.topology = topology
        self._url = url
        self._prefetch = prefetch
        self._reconnect_every = reconnect_every
        self._connection: aiormq.abc.AbstractConnection | None = None
        self._publisher: aiormq.abc.AbstractChannel | None = None
        self._consumers: list[_Consumer] = []
        self._lost = asyncio.Event()
        self._closed = False
        self._supervisor: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def connect(self) -> None:
        """Connect and declare the whole topology; from then on, reconnect by itself."""
        self._closed = False
        await self._open()
        self._supervisor = asyncio.create_task(self._supervise())

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
        """Connected right now (false while the connection is being made again)."""
        return self._publisher is not None and not self._lost.is_set()

    async def close(self) -> None:
        """Close the connection; consumers stop, unacked messages go back to their queues."""
        self._closed = True
        if self._supervisor is not None:
            # Wherever it is (waiting, pausing between tries, connecting): stop it there.
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        await self._drop()

    async def _open(self) -> None:
        """Connect, declare the topology and start every consumer, or raise
        TransportUnavailable (and leave nothing open)."""
        try:
            connection = await asyncio.wait_for(aiormq.connect(self._url), timeout=10)
        except (OSError, aiormq.exceptions.AMQPError) as exc:
            raise TransportUnavailable(f"cannot connect to RabbitMQ: {exc!r}") from exc
        try:
            publisher = await self._set_up(connection)
        except BaseException:
            with contextlib.suppress(*INFRASTRUCTURE_ERRORS, RuntimeError):
                await connection.close()
            raise
        self._connection, self._publisher = connection, publisher
        self._lost.clear()
        for closing in (connection.closing, publisher.closing):
            closing.add_done_callback(functools.partial(self._on_lost, connection))

    async def _set_up(
        self, connection: aiormq.abc.AbstractConnection
    ) -> aiormq.abc.AbstractChannel:
        """The publishing channel, the topology and every consumer, on a new connection."""
        try:
            publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
            await declare_topology(publisher, self.topology)
            for consumer in self._consumers:
                await consumer.start(connection)
        except asyncio.CancelledError as exc:
            if not _cancelled_by_its_connection():
                raise
            raise TransportUnavailable("the connection closed while it was set up") from exc
        return publisher

    def _on_lost(self, connection: aiormq.abc.AbstractConnection, *_: object) -> None:
        """Something of `connection` closed; only the current connection's losses count
        (the old one's closing callbacks come in after it was replaced)."""
        if connection is self._connection:
            self._lost.set()

    async def _drop(self) -> None:
        connection, self._connection, self._publisher = self._connection, None, None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(*INFRASTRUCTURE_ERRORS, RuntimeError):
                await connection.close()

    async def _supervise(self) -> None:
        """Make the connection again whenever it is lost, until the transport closes."""
        while True:
            await self._lost.wait()
            if self._closed:
                return
            log.warning("RabbitMQ connection lost, reconnecting")
            await self._drop()
            while not self._closed:
                try:
                    await self._open()
                    log.info("reconnected to RabbitMQ")
                    break
                except INFRASTRUCTURE_ERRORS as exc:
                    log.warning(
                        "RabbitMQ unreachable, retrying",
                        error=repr(exc),
                        retry_in=self._reconnect_every,
                    )
                    await asyncio.sleep(self._reconnect_every)

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
        properties = Basic.Properties(
            message_id=uuid.uuid4().hex,  # the dead letter's own id, for `saga dlq replay`
            timestamp=datetime.now(UTC),
            headers={**headers, DEAD_REASON_HEADER: reason[:500], DEAD_QUEUE_HEADER: queue},
            delivery_mode=PERSISTENT,
        )
        await self._send(body, self.topology.dead_letter_exchange, queue, properties)

    async def _send(
        self, body: bytes, exchange: str, routing_key: str, properties: Basic.Properties
    ) -> None:
        """Publish persistently and wait for the broker's confirm."""
        publisher = self._publisher
        if publisher is None or self._lost.is_set():
            raise TransportUnavailable("not connected to RabbitMQ")
        try:
            # mandatory: a message no queue would take is returned as an error, not dropped.
            await publisher.basic_publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=True,
                timeout=10,
            )
        except asyncio.CancelledError as exc:
            if not _cancelled_by_its_connection():
                raise
            raise TransportUnavailable("the connection to RabbitMQ was lost") from exc

    async def _publish(
        self, exchange_name: str, routing_key: str, body: bytes, envelope: Envelope
    ) -> None:
        properties = Basic.Properties(
            message_id=envelope.message_id,
            correlation_id=envelope.correlation_id,
            message_type=envelope.type,
            content_type="application/json",
            delivery_mode=PERSISTENT,
        )
        await self._send(body, exchange_name, routing_key, properties)

    async def consume(self, queue_name: str, handler: Handler) -> None:
        """Deliver the queue's messages to `handler`; its Outcome decides ack or dead letter."""
        if self._connection is None:
            raise TransportUnavailable("not connected to RabbitMQ: connect() first")
        consumer = _Consumer(self, queue_name, handler)
        await consumer.start(self._connection)
        self._consumers.append(consumer)

    async def stop_consuming(self, *, grace: float = 10.0) -> None:
        """Take no new messages and let the ones in hand finish (for a clean shutdown)."""
        consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            await consumer.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        for consumer in consumers:
            await consumer.acks.flush()

    async def depth(self, queue_name: str) -> int:
        """Messages waiting in a queue (a passive declare)."""
        connection = self._connection
        if connection is None or not self.connected:
            raise TransportUnavailable("not connected to RabbitMQ")
        channel = await connection.channel()
        try:
            declared = await channel.queue_declare(queue_name, passive=True)
            return int(declared.message_count or 0)
        finally:
            await channel.close()

    async def _settle(
        self, queue_name: str, message: DeliveredMessage, handler: Handler, acks: AckBatcher
    ) -> None:
        """Run the handler on one delivery and settle it as its verdict says."""
        acks.received(message)  # first: deliveries start in the order of their tags
        self._in_flight += 1
        self._idle.clear()
        try:
            headers = dict(message.header.properties.headers or {})
            delivery = Delivery(
                body=message.body,
                headers=headers,
                redelivered=bool(getattr(message.delivery, "redelivered", False)),
            )
            verdict = await run_handler(
                handler,
                delivery,
                queue=queue_name,
                still_held=lambda: not message.channel.is_closed,
            )
            await self._apply_verdict(queue_name, message, verdict, acks, headers)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def _apply_verdict(
        self,
        queue_name: str,
        message: DeliveredMessage,
        verdict: Outcome | Requeue | None,
        acks: AckBatcher,
        headers: dict[str, Any],
    ) -> None:
        tag = _tag(message)
        try:
            match verdict:
                case None:
                    return
                case Requeue():
                    await message.channel.basic_nack(tag, requeue=True)
                    acks.settled(message)
                case DeadLetter(reason=reason):
                    await self.dead_letter(
                        message.body, reason=reason, queue=queue_name, headers=headers
                    )
                    log.warning("message dead-lettered", queue=queue_name, reason=reason)
                    await message.channel.basic_ack(tag)
                    acks.settled(message)
                case Ack():
                    acks.done(message)  # acked within milliseconds, with its neighbours
        except (*INFRASTRUCTURE_ERRORS, *PUBLISH_ERRORS) as exc:
            # Give it back rather than hold it: the broker delivers it again (if the
            # channel is gone too, it does so on its own).
            log.warning("message could not be settled, requeued", queue=queue_name, error=repr(exc))
            with contextlib.suppress(*INFRASTRUCTURE_ERRORS):
                await message.channel.basic_nack(tag, requeue=True)
            acks.settled(message)


class _Consumer:
    """One queue's consumer: a channel of its own, started again on every new connection."""

    def __init__(self, transport: RabbitTransport, queue: str, handler: Handler) -> None:
        self._transport = transport
        self._queue = queue
        self._handler = handler
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._tag: str | None = None
        self.acks = AckBatcher()

    async def start(self, connection: aiormq.abc.AbstractConnection) -> None:
        """Open a channel, declare the queue (it may be gone) and consume it."""
        transport = self._transport
        channel = await connection.channel(publisher_confirms=False)
        await channel.basic_qos(prefetch_count=transport._prefetch)
        await channel.queue_declare(
            self._queue, durable=True, arguments=work_queue_arguments(transport.topology)
        )
        ok = await channel.basic_consume(self._queue, self._on_message, no_ack=False)
        self._channel, self._tag = channel, ok.consumer_tag
        # A channel the broker closes, or a consumer it cancels (its queue deleted), is
        # a loss like any other: the connection is made again, with this consumer.
        lost = functools.partial(transport._on_lost, connection)
        channel.closing.add_done_callback(lost)
        channel.on_consumer_cancel_callbacks.add(
            lambda frame: lost() if frame.consumer_tag == ok.consumer_tag else None
        )

    async def cancel(self) -> None:
        """Take no more messages (those in hand are still settled)."""
        channel, tag = self._channel, self._tag
        self._channel = self._tag = None
        if channel is None or tag is None or channel.is_closed:
            return
        with contextlib.suppress(*INFRASTRUCTURE_ERRORS, RuntimeError):
            await channel.basic_cancel(tag)

    async def _on_message(self, message: DeliveredMessage) -> None:
        await self._transport._settle(self._queue, message, self._handler, self.acks)


def _cancelled_by_its_connection() -> bool:
    """Whether a CancelledError that reached this task came from aiormq, which cancels
    the calls under way on a connection that closes (to the caller, a lost connection),
    rather than from someone cancelling this task (which must propagate)."""
    task = asyncio.current_task()
    return task is not None and not task.cancelling()


def _tag(message: DeliveredMessage) -> int:
    tag = message.delivery_tag
    assert tag is not None, "a consumed delivery has a tag"
    return tag


def work_queue_arguments(topology: Topology) -> dict[str, Any]:
    """The arguments of the orchestrator's and the participants' queues."""
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": topology.dead_letter_exchange,
        "x-delivery-limit": DELIVERY_LIMIT + 1,
    }


async def declare_topology(channel: aiormq.abc.AbstractChannel, topology: Topology) -> None:
    """Declare exchanges, quorum queues and bindings; safe to run from every process."""
    for exchange, kind in (
        (topology.commands_exchange, "direct"),
        (topology.replies_exchange, "direct"),
        (topology.dead_letter_exchange, "fanout"),
    ):
        await channel.exchange_declare(exchange, exchange_type=kind, durable=True)
    await channel.queue_declare(
        topology.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await channel.queue_bind(topology.dead_letter_queue, topology.dead_letter_exchange)
    work_args = work_queue_arguments(topology)
    await channel.queue_declare(topology.orchestrator_queue, durable=True, arguments=work_args)
    await channel.queue_bind(
        topology.orchestrator_queue,
        topology.replies_exchange,
        routing_key=ORCHESTRATOR_ROUTING_KEY,
    )
    for participant in PARTICIPANTS:
        queue = topology.participant_queue(participant)
        await channel.queue_declare(queue, durable=True, arguments=work_args)
        await channel.queue_bind(queue, topology.commands_exchange, routing_key=participant)


async def delete_topology(channel: AbstractChannel, topology: Topology) -> None:
    """Remove every queue and exchange of a namespace (tests and `saga` clean-up)."""
    for name in topology.all_queues():
        await channel.queue_delete(name)
    for name in topology.all_exchanges():
        await channel.exchange_delete(name)
