"""The RabbitMQ transport on aiormq: topology, confirmed publishing, acks, reconnecting."""

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractChannel
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic
from pamqp.common import FieldTable

from contracts.envelope import Envelope
from contracts.topology import ORCHESTRATOR_ROUTING_KEY, Participant, Topology
from saga import tracing
from saga.acks import AckBatcher, delivery_tag
from saga.amqp_errors import AMQP_OUTAGES, AMQP_REFUSALS, NO_ROUTE
from saga.amqp_nodes import GROUP_SIZE_ARGUMENT, first_answering, group_size, node_urls
from saga.core.policy import RECONNECT, Backoff, backoff_delay
from saga.handling import run_handler
from saga.settings import without_password
from saga.socket_writes import JoinedWritesFactory
from saga.transport import (
    DELIVERY_LIMIT,
    PUBLISH_ERRORS,
    Ack,
    DeadLetter,
    Delivery,
    Handler,
    Outcome,
    PublishRefused,
    Requeue,
    TransportUnavailable,
    Unroutable,
    parked_headers,
)

log = structlog.get_logger(__name__)


def _not_a_failed_connect(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("error when creating transport")


# aiormq logs every failed connect as an error of its own, then raises it; the error it
# raises is said once where it is handled (a retry's warning, or the CLI's one line that
# names the URL), so its own line is only a second, louder copy.
logging.getLogger("aiormq.connection").addFilter(_not_a_failed_connect)

PERSISTENT: Final = int(aio_pika.DeliveryMode.PERSISTENT)
# What means the broker or a channel is away, in the port's words or the client's.
_OUTAGES: Final = (TransportUnavailable, *AMQP_OUTAGES)
# The longest a connection's close waits for the broker's Close-Ok and the socket: a
# broker that stopped answering (paused, its host gone) must not hold a process's
# shutdown. What is still unacked goes back to its queue when the broker sees the
# socket go, either way.
CLOSE_WITHIN: Final = 5.0


@contextlib.contextmanager
def _translated(doing: str) -> Iterator[None]:
    """The client's errors as the port's: an outage is TransportUnavailable, a returned
    message Unroutable, a nacked one PublishRefused (each with the client's as its cause)."""
    try:
        yield
    except AMQP_REFUSALS as exc:
        code = getattr(getattr(exc, "frame", None), "reply_code", None)
        if code == NO_ROUTE:
            raise Unroutable(f"{doing}: no queue takes it ({exc})") from exc
        raise PublishRefused(f"{doing}: the broker refused it ({exc})") from exc
    except AMQP_OUTAGES as exc:
        raise TransportUnavailable(f"{doing}: {exc!r}") from exc


class RabbitTransport:
    """One AMQP connection with a confirmed publishing channel and a channel per consumer,
    made again whenever it, or any of its channels, is lost: to another node of a
    cluster's, when `url` names several (comma-separated).

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
        self,
        url: str,
        topology: Topology,
        *,
        prefetch: int = 32,
        reconnect: Backoff = RECONNECT,
        name: str = "saga",
        quorum_size: int | None = None,
    ) -> None:
        self.topology = topology
        self._urls = node_urls(url)
        # The node tried first: processes start on nodes drawn at random, which spreads
        # their connections over the cluster; after a loss, another is tried first.
        self._node = random.randrange(len(self._urls))
        self._group_size = group_size(quorum_size, len(self._urls))
        if quorum_size is not None and quorum_size > len(self._urls):
            log.warning(
                "the quorum group size asked for is more than the RabbitMQ nodes named; "
                "RabbitMQ puts at most one member of a queue on each node of its cluster",
                quorum_size=quorum_size,
                nodes_named=len(self._urls),
            )
        self._prefetch = prefetch
        # The waits between tries to connect (RECONNECT: jittered, so that the replicas a
        # broker restart disconnected together do not come back in step).
        self._reconnect = reconnect
        # Shown by RabbitMQ (`rabbitmqctl list_connections client_properties`, the
        # management UI), so an operator can tell whose connection is whose.
        self._client_properties: FieldTable = {"connection_name": f"{name} ({topology.namespace})"}
        self._connection: aiormq.abc.AbstractConnection | None = None
        self._publisher: aiormq.Channel | None = None
        self._consumers: list[_Consumer] = []
        self._lost = asyncio.Event()
        self._up = asyncio.Event()  # connected, set up, and nothing of it lost since
        self._closed = False
        self._supervisor: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def connect(self) -> None:
        """Connect and declare the whole topology; from then on, reconnect by itself."""
        self._closed = False
        await self._open()
        self._supervise_in_background()

    async def keep_connecting(self) -> None:
        """Connect, trying again until the broker answers (for a process that serves
        without it meanwhile); from then on, reconnect by itself."""
        self._closed = False
        self._lost.set()
        self._supervise_in_background()
        await self._up.wait()

    @property
    def nodes(self) -> tuple[str, ...]:
        """The AMQP URLs of the nodes it connects to (one of them at a time)."""
        return self._urls

    @property
    def node(self) -> str | None:
        """The URL of the node it is connected to now (None while not connected)."""
        return self._urls[self._node] if self.connected else None

    @property
    def group_size(self) -> int | None:
        """How many members the quorum queues it makes have (None: the broker's default)."""
        return self._group_size

    @property
    def connected(self) -> bool:
        """Connected right now (false while the connection is being made again)."""
        return self._up.is_set()

    async def close(self) -> None:
        """Close the connection; consumers stop, unacked messages go back to their queues."""
        self._closed = True
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            # Wherever it is (waiting, pausing between tries, connecting): stop it there.
            supervisor.cancel()
            await asyncio.wait([supervisor])
        await self._drop()

    def _supervise_in_background(self) -> None:
        if self._supervisor is None or self._supervisor.done():
            self._supervisor = asyncio.create_task(self._supervise(), name="rabbitmq supervisor")

    async def _open(self) -> None:
        """Connect, declare the topology and start every consumer, or raise (and leave
        nothing open)."""
        try:
            self._node, connection = await first_answering(
                self._urls, self._connect_node, start=self._node
            )
        except (OSError, aiormq.exceptions.AMQPError) as exc:
            raise TransportUnavailable(f"cannot connect to RabbitMQ: {exc!r}") from exc
        # Current from now on: a loss while it is being set up counts (and is met by
        # making it again once this setup is over).
        self._connection, self._publisher = connection, None
        self._lost.clear()
        lost = functools.partial(self._on_lost, connection)
        connection.closing.add_done_callback(lost)
        try:
            publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
            assert isinstance(publisher, aiormq.Channel)  # publishes without waiting to drain
            publisher.closing.add_done_callback(lost)
            await declare_topology(publisher, self.topology, group_size=self._group_size)
            for consumer in self._consumers:
                await consumer.start(connection, lost)
        except BaseException:
            await self._drop()
            raise
        self._publisher = publisher
        if not self._lost.is_set():
            self._up.set()

    async def _connect_node(self, url: str) -> aiormq.abc.AbstractConnection:
        return await asyncio.wait_for(
            aiormq.connect(
                url,
                client_properties=self._client_properties,
                transport_factory=JoinedWritesFactory(),
            ),
            timeout=10,
        )

    def _try_another_node_first(self) -> None:
        """Start the next connect at another node, drawn at random: the processes one
        node's loss disconnected spread over the nodes left, not all onto one."""
        if len(self._urls) > 1:
            self._node = (self._node + random.randrange(1, len(self._urls))) % len(self._urls)

    def _on_lost(self, connection: aiormq.abc.AbstractConnection, *_: object) -> None:
        """Something of `connection` closed; only the current connection's losses count
        (the old one's closing callbacks come in after it was replaced)."""
        if connection is self._connection:
            self._up.clear()
            self._lost.set()

    async def _drop(self) -> None:
        self._up.clear()
        connection, self._connection, self._publisher = self._connection, None, None
        if connection is not None and not connection.is_closed:
            # The calls still under way on it fail with this, not with a CancelledError
            # (aiormq's default) that their callers would take for their own cancellation.
            lost = TransportUnavailable("the connection to RabbitMQ was closed")
            try:
                await asyncio.wait_for(connection.close(lost), CLOSE_WITHIN)
            except TimeoutError:
                log.warning("RabbitMQ did not answer the close in time", within=CLOSE_WITHIN)
            except (*_OUTAGES, RuntimeError):
                pass

    async def _supervise(self) -> None:
        """Make the connection again whenever it is lost, until the transport closes."""
        while True:
            await self._lost.wait()
            if self._closed:
                return
            if self._connection is not None:  # not the first try of keep_connecting
                log.warning("RabbitMQ connection lost, reconnecting")
                self._try_another_node_first()  # its node may be the one that went
            await self._drop()
            failed = 0
            while not self._closed:
                if failed:
                    # A node that takes the connection but not the setup (one cut off from
                    # the others' majority) is not tried first again.
                    self._try_another_node_first()
                try:
                    await self._open()
                    log.info("connected to RabbitMQ", node=without_password(self._urls[self._node]))
                    break
                except _OUTAGES as exc:
                    failed += 1
                    delay = backoff_delay(self._reconnect, failed, random.random()).total_seconds()
                    log.warning("RabbitMQ unreachable, retrying", error=repr(exc), retry_in=delay)
                except Exception as exc:
                    # Not an outage (a refused declaration, a protocol error): said loudly,
                    # and tried again, rather than leaving the process silently unconnected.
                    failed += 1
                    delay = backoff_delay(self._reconnect, failed, random.random()).total_seconds()
                    log.exception("RabbitMQ setup failed, retrying", error=repr(exc))
                await asyncio.sleep(delay)

    async def declare_participants(self, names: Iterable[Participant]) -> None:
        """Declare these participants' queues now (if connected) and on every reconnect."""
        topology = self.topology.with_participants(names)
        if topology == self.topology:
            return
        self.topology = topology
        publisher = self._publisher
        if publisher is not None and self.connected:
            with _translated("declaring queues"):
                await declare_topology(publisher, topology, group_size=self._group_size)

    async def publish_command(self, participant: Participant, envelope: Envelope) -> None:
        """Publish a command to a participant and wait for the broker's confirm."""
        await self._publish(
            self.topology.commands_exchange,
            participant,
            envelope.to_bytes(),
            envelope,
            queue=self.topology.participant_queue(participant),
        )

    async def publish_reply(self, envelope: Envelope) -> None:
        """Publish a reply to the orchestrator and wait for the broker's confirm."""
        await self._publish(
            self.topology.replies_exchange,
            ORCHESTRATOR_ROUTING_KEY,
            envelope.to_bytes(),
            envelope,
            queue=self.topology.orchestrator_queue,
        )

    async def dead_letter(
        self,
        body: bytes,
        *,
        reason: str,
        queue: str,
        headers: dict[str, Any],
        properties: Basic.Properties | None = None,
    ) -> None:
        """Park a message in the namespace's dead-letter queue with its own `properties`,
        and its reason, source queue and dead-letter id in headers."""
        kept = properties or Basic.Properties()
        # Only what says what the message is: an expiration would drop it from the dead
        # letters, a user_id not ours would have the broker refuse it.
        parked = Basic.Properties(
            message_id=kept.message_id,
            correlation_id=kept.correlation_id,
            message_type=kept.message_type,
            content_type=kept.content_type,
            content_encoding=kept.content_encoding,
            app_id=kept.app_id,
            timestamp=datetime.now(UTC),
            headers=encodable(parked_headers(headers, reason=reason, queue=queue)),
            delivery_mode=PERSISTENT,
        )
        await self._send(body, self.topology.dead_letter_exchange, queue, parked)

    async def _send(
        self, body: bytes, exchange: str, routing_key: str, properties: Basic.Properties
    ) -> None:
        """Publish persistently and wait for the broker's confirm."""
        publisher = self._publisher
        if publisher is None or not self._up.is_set():
            raise TransportUnavailable("not connected to RabbitMQ")
        # mandatory: a message no queue would take is returned as an error, not dropped.
        # wait=False: the broker's confirm is what is awaited; waiting for the socket to
        # drain as well held the channel's lock over each write, one publish a turn of the
        # loop, so that publishes made together could not share a write.
        with _translated(f"publishing to {exchange} ({routing_key})"):
            await publisher.basic_publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=True,
                timeout=10,
                wait=False,
            )

    async def _publish(
        self, exchange_name: str, routing_key: str, body: bytes, envelope: Envelope, *, queue: str
    ) -> None:
        with tracing.producer(
            envelope, exchange=exchange_name, routing_key=routing_key, queue=queue
        ):
            properties = Basic.Properties(
                message_id=envelope.message_id,
                correlation_id=envelope.correlation_id,
                message_type=envelope.type,
                content_type="application/json",
                delivery_mode=PERSISTENT,
                headers=_headers(tracing.message_headers()),
            )
            await self._send(body, exchange_name, routing_key, properties)

    async def consume(self, queue_name: str, handler: Handler) -> None:
        """Deliver the queue's messages to `handler`; its Outcome decides ack or dead letter.

        While the connection is being made again, the consumer starts with it."""
        consumer = _Consumer(
            queue_name,
            functools.partial(self._settle, queue_name, handler),
            prefetch=self._prefetch,
            arguments=work_queue_arguments(self.topology),
            group_size=self._group_size,
        )
        self._consumers.append(consumer)
        connection = self._connection
        if connection is not None and self.connected:
            with _translated(f"consuming {queue_name}"):
                await consumer.start(connection, functools.partial(self._on_lost, connection))

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
        with _translated(f"counting {queue_name}"):
            channel = await connection.channel()
            try:
                declared = await channel.queue_declare(queue_name, passive=True)
                return int(declared.message_count or 0)
            finally:
                await channel.close()

    async def consumers(self, queue_name: str) -> int:
        """How many consumers read a queue now (0 for a queue that does not exist)."""
        connection = self._connection
        if connection is None or not self.connected:
            raise TransportUnavailable("not connected to RabbitMQ")
        with _translated(f"counting the consumers of {queue_name}"):
            channel = await connection.channel()  # a missing queue closes it
            try:
                declared = await channel.queue_declare(queue_name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                return 0
            await channel.close()
            return int(declared.consumer_count or 0)

    async def _settle(
        self, queue_name: str, handler: Handler, message: DeliveredMessage, acks: AckBatcher
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
        tag = delivery_tag(message)
        try:
            match verdict:
                case None:
                    return
                case Requeue():
                    await message.channel.basic_nack(tag, requeue=True)
                    acks.settled(message)
                case DeadLetter(reason=reason):
                    await self.dead_letter(
                        message.body,
                        reason=reason,
                        queue=queue_name,
                        headers=headers,
                        properties=message.header.properties,
                    )
                    log.warning("message dead-lettered", queue=queue_name, reason=reason)
                    await message.channel.basic_ack(tag)
                    acks.settled(message)
                case Ack():
                    acks.done(message)  # acked within milliseconds, with its neighbours
        except (*_OUTAGES, *PUBLISH_ERRORS) as exc:
            # Give it back rather than hold it: the broker delivers it again (if the
            # channel is gone too, it does so on its own).
            log.warning("message could not be settled, requeued", queue=queue_name, error=repr(exc))
            with contextlib.suppress(*_OUTAGES):
                await message.channel.basic_nack(tag, requeue=True)
            acks.settled(message)


OnDelivery = Callable[[DeliveredMessage, AckBatcher], Awaitable[None]]


class _Consumer:
    """One queue's consumer: a channel of its own, started again on every new connection."""

    def __init__(
        self,
        queue: str,
        on_delivery: OnDelivery,
        *,
        prefetch: int,
        arguments: dict[str, Any],
        group_size: int | None,
    ) -> None:
        self._queue = queue
        self._on_delivery = on_delivery
        self._prefetch = prefetch
        self._arguments = arguments
        self._group_size = group_size
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._tag: str | None = None
        self.acks = AckBatcher()

    async def start(
        self, connection: aiormq.abc.AbstractConnection, lost: Callable[..., None]
    ) -> None:
        """Open a channel, declare the queue (it may be gone) and consume it; `lost` is
        called if the broker closes the channel or cancels the consumer."""
        channel = await connection.channel(publisher_confirms=False)
        # A channel the broker closes, or a consumer it cancels (its queue deleted), is
        # a loss like any other: the connection is made again, with this consumer.
        channel.closing.add_done_callback(lost)
        await channel.basic_qos(prefetch_count=self._prefetch)
        await declare_quorum_queue(channel, self._queue, self._arguments, self._group_size)
        ok = await channel.basic_consume(self._queue, self._on_message, no_ack=False)
        self._channel, self._tag = channel, ok.consumer_tag
        channel.on_consumer_cancel_callbacks.add(
            lambda frame: lost() if frame.consumer_tag == ok.consumer_tag else None
        )

    async def cancel(self) -> None:
        """Take no more messages (those in hand are still settled)."""
        channel, tag = self._channel, self._tag
        self._channel = self._tag = None
        if channel is None or tag is None or channel.is_closed:
            return
        with contextlib.suppress(*_OUTAGES, RuntimeError):
            await channel.basic_cancel(tag)

    async def _on_message(self, message: DeliveredMessage) -> None:
        await self._on_delivery(message, self.acks)


def encodable(headers: Mapping[str, Any]) -> dict[str, Any]:
    """Headers as they were received, in a form that can be sent again: a string that was
    not UTF-8 is received as bytes, and sent as a byte array (pamqp sends no bytes)."""
    return {key: _encodable(value) for key, value in headers.items()}


def _encodable(value: Any) -> Any:
    if isinstance(value, bytes):
        return bytearray(value)
    if isinstance(value, Mapping):
        return encodable(value)
    if isinstance(value, list):
        return [_encodable(item) for item in value]
    return value


def work_queue_arguments(topology: Topology) -> dict[str, Any]:
    """The arguments of the orchestrator's and the participants' queues."""
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": topology.dead_letter_exchange,
        "x-delivery-limit": DELIVERY_LIMIT + 1,
    }


async def declare_topology(
    channel: aiormq.abc.AbstractChannel, topology: Topology, *, group_size: int | None = None
) -> None:
    """Declare exchanges, quorum queues and bindings; safe to run from every process.
    Queues made now get `group_size` members (None: the broker's default)."""
    for exchange, kind in (
        (topology.commands_exchange, "direct"),
        (topology.replies_exchange, "direct"),
        (topology.dead_letter_exchange, "fanout"),
    ):
        await channel.exchange_declare(exchange, exchange_type=kind, durable=True)
    await declare_quorum_queue(
        channel, topology.dead_letter_queue, {"x-queue-type": "quorum"}, group_size
    )
    await channel.queue_bind(topology.dead_letter_queue, topology.dead_letter_exchange)
    work_args = work_queue_arguments(topology)
    await declare_quorum_queue(channel, topology.orchestrator_queue, work_args, group_size)
    await channel.queue_bind(
        topology.orchestrator_queue,
        topology.replies_exchange,
        routing_key=ORCHESTRATOR_ROUTING_KEY,
    )
    for participant in topology.participants:
        queue = topology.participant_queue(participant)
        await declare_quorum_queue(channel, queue, work_args, group_size)
        await channel.queue_bind(queue, topology.commands_exchange, routing_key=participant)


async def declare_quorum_queue(
    channel: aiormq.abc.AbstractChannel,
    name: str,
    arguments: dict[str, Any],
    group_size: int | None,
) -> None:
    """Declare a durable queue with `arguments`; with a group size, one not there yet is
    made with it, and one that is there is taken as it is: RabbitMQ refuses a declare
    whose group size differs from the queue's, or that gives one the queue was made
    without (as queues made before clusters were supported were)."""
    if group_size is None:
        await channel.queue_declare(name, durable=True, arguments=arguments)
        return
    # Asked on a channel of its own: a queue that is not there closes the channel asking.
    probe = await channel.connection.channel()
    try:
        await probe.queue_declare(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        sized = {**arguments, GROUP_SIZE_ARGUMENT: group_size}
        await channel.queue_declare(name, durable=True, arguments=sized)
        return
    await probe.close()


async def delete_topology(channel: AbstractChannel, topology: Topology) -> None:
    """Remove every queue and exchange of a namespace (tests and `saga` clean-up)."""
    for name in topology.all_queues():
        await channel.queue_delete(name)
    for name in topology.all_exchanges():
        await channel.exchange_delete(name)


def _headers(values: Mapping[str, str] | None) -> FieldTable | None:
    """AMQP headers of a message we publish (none: the usual case)."""
    return dict(values) if values else None
