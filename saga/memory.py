"""An in-memory transport behind the same port as RabbitMQ: for `saga demo` and fast tests.

It routes like the broker (commands by participant, replies to the orchestrator, dead
letters to the dead-letter queue), redelivers what a handler gives back, counts
deliveries, and dead-letters by the same policy; it keeps nothing across a restart.
"""

import asyncio
import contextlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from contracts.envelope import Envelope
from contracts.topology import ORCHESTRATOR_ROUTING_KEY, Participant, Topology
from saga import tracing
from saga.handling import run_handler
from saga.transport import (
    Ack,
    DeadLetter,
    Delivery,
    Handler,
    Requeue,
    TransportUnavailable,
    Unroutable,
    parked_headers,
)

log = structlog.get_logger(__name__)


@dataclass
class _Message:
    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    deliveries: int = 0
    message_id: str = field(default_factory=lambda: uuid.uuid4().hex)


class InMemoryTransport:
    """Queues in this process; consumers are tasks."""

    def __init__(self, topology: Topology, *, prefetch: int = 32) -> None:
        self.topology = topology
        self._prefetch = prefetch
        self._queues: dict[str, asyncio.Queue[_Message]] = {}
        self._parked: list[_Message] = []
        self._workers: list[asyncio.Task[None]] = []
        self._consumers: dict[str, int] = {}
        self._in_flight = 0
        self._hands_empty = asyncio.Event()
        self._hands_empty.set()
        self._connected = False
        self._stopping = False

    @property
    def connected(self) -> bool:
        """Connected right now."""
        return self._connected

    async def connect(self) -> None:
        """Create the namespace's queues."""
        for name in self.topology.all_queues():
            if name != self.topology.dead_letter_queue:
                self._queues.setdefault(name, asyncio.Queue())
        self._connected = True

    async def keep_connecting(self) -> None:
        """Connect (an in-memory transport is always there to connect to)."""
        await self.connect()

    async def close(self) -> None:
        """Stop the consumers; what they had not acked is back in its queue."""
        await self.stop_consuming(grace=0)
        self._connected = False

    async def declare_participants(self, names: Iterable[Participant]) -> None:
        """Create these participants' queues."""
        self.topology = self.topology.with_participants(names)
        for participant in self.topology.participants:
            self._queues.setdefault(self.topology.participant_queue(participant), asyncio.Queue())

    async def publish_command(self, participant: Participant, envelope: Envelope) -> None:
        """Route a command to its participant's queue."""
        if participant not in self.topology.participants:
            raise Unroutable(f"no queue for routing key {participant!r}")
        exchange = self.topology.commands_exchange
        self._publish(exchange, participant, self.topology.participant_queue(participant), envelope)

    async def publish_reply(self, envelope: Envelope) -> None:
        """Route a reply to the orchestrator's queue."""
        exchange, queue = self.topology.replies_exchange, self.topology.orchestrator_queue
        self._publish(exchange, ORCHESTRATOR_ROUTING_KEY, queue, envelope)

    def _publish(self, exchange: str, routing_key: str, queue: str, envelope: Envelope) -> None:
        with tracing.producer(envelope, exchange=exchange, routing_key=routing_key, queue=queue):
            headers = tracing.message_headers() or {}
            self._put(queue, _Message(envelope.to_bytes(), dict(headers)))

    async def dead_letter(
        self, body: bytes, *, reason: str, queue: str, headers: dict[str, Any]
    ) -> None:
        """Park a message with its reason and its dead-letter id."""
        self._parked.append(_Message(body, parked_headers(headers, reason=reason, queue=queue)))

    def parked(self) -> list[tuple[bytes, dict[str, Any]]]:
        """The dead letters, oldest first (they stay parked)."""
        return [(m.body, m.headers) for m in self._parked]

    async def depth(self, queue_name: str) -> int:
        """Messages waiting in a queue."""
        if queue_name == self.topology.dead_letter_queue:
            return len(self._parked)
        return self._queue(queue_name).qsize()

    async def consumers(self, queue_name: str) -> int:
        """How many consumers read a queue now (each `consume` is one)."""
        return self._consumers.get(queue_name, 0)

    async def consume(self, queue_name: str, handler: Handler) -> None:
        """Start `prefetch` workers taking messages from the queue."""
        queue = self._queue(queue_name)
        self._consumers[queue_name] = self._consumers.get(queue_name, 0) + 1
        for _ in range(self._prefetch):
            self._workers.append(asyncio.create_task(self._work(queue_name, queue, handler)))

    async def stop_consuming(self, *, grace: float = 10.0) -> None:
        """Take no new messages; give the ones in hand `grace` seconds to finish."""
        self._stopping = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._hands_empty.wait(), grace)
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._workers.clear()
        self._consumers.clear()
        self._stopping = False

    def _queue(self, name: str) -> asyncio.Queue[_Message]:
        if not self._connected:
            raise TransportUnavailable("the in-memory transport is not connected")
        if name not in self._queues:
            raise Unroutable(f"no queue {name!r}")
        return self._queues[name]

    def _put(self, queue_name: str, message: _Message) -> None:
        self._queue(queue_name).put_nowait(message)

    async def _work(self, name: str, queue: asyncio.Queue[_Message], handler: Handler) -> None:
        while not self._stopping:
            message = await queue.get()
            if self._stopping:
                queue.put_nowait(message)  # taken just as the consumer stopped: not ours
                return
            self._in_flight += 1
            self._hands_empty.clear()
            try:
                await self._settle(name, queue, message, handler)
            finally:
                self._in_flight -= 1
                if not self._in_flight:
                    self._hands_empty.set()

    async def _settle(
        self, name: str, queue: asyncio.Queue[_Message], message: _Message, handler: Handler
    ) -> None:
        delivery = Delivery(
            body=message.body,
            headers={**message.headers, "x-delivery-count": message.deliveries},
            redelivered=message.deliveries > 0,
        )
        try:
            verdict = await run_handler(handler, delivery, queue=name, still_held=lambda: True)
        except asyncio.CancelledError:
            # A consumer stopped mid-message: not acked, so delivered again, like a broker.
            message.deliveries += 1
            queue.put_nowait(message)
            raise
        match verdict:
            case Requeue():
                message.deliveries += 1
                queue.put_nowait(message)
            case DeadLetter(reason=reason):
                await self.dead_letter(
                    message.body, reason=reason, queue=name, headers=message.headers
                )
                log.warning("message dead-lettered", queue=name, reason=reason)
            case Ack() | None:
                pass
