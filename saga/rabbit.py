"""The RabbitMQ transport: topology, confirmed publishing, consuming with the ack policy."""

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime
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
    Requeue,
    TransportUnavailable,
    run_handler,
)

log = structlog.get_logger(__name__)

PERSISTENT: Final = int(aio_pika.DeliveryMode.PERSISTENT)


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
        self._acks: list[AckBatcher] = []
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
        """Connect, retrying until the broker answers (for processes that start without it).

        Each try is a plain connection first: cancelling it (the process stopping) is
        clean, where a robust connection cancelled mid-way keeps reconnecting behind
        everyone's back and holds the process open.
        """
        while True:
            try:
                probe = await aio_pika.connect(self._url, timeout=10)
                await probe.close()
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
            timestamp=datetime.now(UTC),
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
        # Straight to the channel underneath (aio-pika's Message and Exchange layers
        # cost more CPU than the frames themselves); the robust channel still owns it.
        channel = self._channel
        if channel is None or channel.is_closed:
            raise TransportUnavailable("not connected to RabbitMQ")
        underlay = await channel.get_underlay_channel()
        properties = Basic.Properties(
            message_id=envelope.message_id,
            correlation_id=envelope.correlation_id,
            message_type=envelope.type,
            content_type="application/json",
            delivery_mode=PERSISTENT,
        )
        # mandatory: a message no queue would take is returned as an error, not dropped.
        await underlay.basic_publish(
            body,
            exchange=exchange_name,
            routing_key=routing_key,
            properties=properties,
            mandatory=True,
            timeout=10,
        )

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

        acks = AckBatcher()
        self._acks.append(acks)

        async def on_message(message: AbstractIncomingMessage) -> None:
            acks.received(message)  # first: deliveries start in the order of their tags
            self._in_flight += 1
            self._idle.clear()
            try:
                await self._settle(queue_name, message, handler, acks)
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
        for acks in self._acks:
            await acks.flush()

    async def _settle(
        self,
        queue_name: str,
        message: AbstractIncomingMessage,
        handler: Handler,
        acks: AckBatcher,
    ) -> None:
        delivery = Delivery(
            body=message.body,
            headers=dict(message.headers or {}),
            redelivered=bool(message.redelivered),
        )
        verdict = await run_handler(
            handler, delivery, queue=queue_name, still_held=lambda: not message.channel.is_closed
        )
        try:
            match verdict:
                case None:
                    return
                case Requeue():
                    await message.nack(requeue=True)
                    acks.settled(message)
                case DeadLetter(reason=reason):
                    await self.dead_letter(
                        message.body, reason=reason, queue=queue_name, headers=delivery.headers
                    )
                    log.warning("message dead-lettered", queue=queue_name, reason=reason)
                    await message.ack()
                    acks.settled(message)
                case Ack():
                    acks.done(message)  # acked within milliseconds, with its neighbours
        except (*INFRASTRUCTURE_ERRORS, *PUBLISH_ERRORS) as exc:
            # Give it back rather than hold it: the broker delivers it again (if the
            # channel is gone too, it does so on its own).
            log.warning("message could not be settled, requeued", queue=queue_name, error=repr(exc))
            with contextlib.suppress(*INFRASTRUCTURE_ERRORS):
                await message.nack(requeue=True)
            acks.settled(message)

    async def depth(self, queue_name: str) -> int:
        """Messages waiting in a queue (a passive declare)."""
        if self._connection is None or not self.connected:
            raise TransportUnavailable("not connected to RabbitMQ")
        channel = await self._connection.channel()
        try:
            queue = await channel.declare_queue(queue_name, passive=True)
            return int(queue.declaration_result.message_count or 0)
        finally:
            await channel.close()


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
