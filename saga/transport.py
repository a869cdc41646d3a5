"""The transport port: what a transport does, the ack policy, and its own errors.

Two adapters implement it: `saga.rabbit.RabbitTransport` (production) and
`saga.memory.InMemoryTransport` (the embedded demo and fast tests); one contract test
suite runs against both. The port imports no client library: each adapter translates its
client's errors into the port's (`TransportUnavailable`, `PublishRefused`, `Unroutable`).
"""

import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from contracts.envelope import Envelope
from contracts.topology import Participant, Topology

DEAD_REASON_HEADER: Final = "x-saga-dead-reason"
DEAD_QUEUE_HEADER: Final = "x-saga-source-queue"
# A message's dead-letter id: given when it is first parked, kept through every replay
# and every parking after (by a transport, or by RabbitMQ on the delivery limit, which
# keeps a message's headers), so an operator can name it and a replay can tell it again.
DEAD_ID_HEADER: Final = "x-saga-dead-letter-id"
_DEAD_LETTER_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
# A message whose handler raised on this many redeliveries goes to the dead letters,
# with the last error as its reason.
DELIVERY_LIMIT: Final = 10


def is_dead_letter_id(value: object) -> bool:
    """Whether `value` can serve as a dead-letter id: short, and typed as it is shown."""
    return isinstance(value, str) and _DEAD_LETTER_ID.fullmatch(value) is not None


def parked_headers(headers: Mapping[str, Any], *, reason: str, queue: str) -> dict[str, Any]:
    """The headers a message is parked with: its own, why, where from, and its dead-letter
    id (the one it was first parked with, or a new one)."""
    known = headers.get(DEAD_ID_HEADER)
    return {
        **headers,
        DEAD_ID_HEADER: known if is_dead_letter_id(known) else uuid.uuid4().hex,
        DEAD_REASON_HEADER: reason[:500],
        DEAD_QUEUE_HEADER: queue,
    }


def error_text(exc: BaseException) -> str:
    """An error as its type and what it says (`ResponseError: hash value is not an
    integer`): redis-py's repr of its errors names the type only (`server:ResponseError`)."""
    said = str(exc)
    return f"{type(exc).__name__}: {said}" if said else type(exc).__name__


class TransportUnavailable(ConnectionError):
    """Not connected to the broker (yet, or any more)."""


class Unroutable(Exception):
    """No queue takes a message published with this routing key."""


class PublishRefused(Exception):
    """The broker refused a published message (it did not confirm it)."""


# The broker refused or returned a published message (a nack, or no queue took it).
PUBLISH_ERRORS: Final = (PublishRefused, Unroutable)


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


@dataclass(frozen=True)
class Requeue:
    """The handler failed: give the message back to the queue for another try."""


Outcome = Ack | DeadLetter
ACK: Final = Ack()
REQUEUE: Final = Requeue()
Handler = Callable[[Delivery], Awaitable[Outcome]]


class Transport(Protocol):
    """Publish commands and replies with confirms; consume queues with a named ack policy."""

    topology: Topology

    @property
    def connected(self) -> bool:
        """Connected right now."""
        ...

    async def connect(self) -> None:
        """Connect and declare the namespace's queues."""
        ...

    async def keep_connecting(self) -> None:
        """Connect, trying again until it works (for a process that serves without the
        broker meanwhile); from then on, reconnect by itself."""
        ...

    async def close(self) -> None:
        """Stop everything; unacknowledged messages go back to their queues."""
        ...

    async def declare_participants(self, names: Iterable[Participant]) -> None:
        """Make sure these participants have their queues (now, and after any reconnect),
        so that commands to them wait there for them."""
        ...

    async def publish_command(self, participant: Participant, envelope: Envelope) -> None:
        """Publish a command to a participant; returns once the broker has it."""
        ...

    async def publish_reply(self, envelope: Envelope) -> None:
        """Publish a reply to the orchestrator; returns once the broker has it."""
        ...

    async def consume(self, queue_name: str, handler: Handler) -> None:
        """Deliver the queue's messages to `handler`; its outcome decides ack or dead letter."""
        ...

    async def stop_consuming(self, *, grace: float = 10.0) -> None:
        """Take no new messages and let the ones in hand finish."""
        ...

    async def depth(self, queue_name: str) -> int:
        """Messages waiting in a queue (not counting those in a consumer's hands)."""
        ...

    async def consumers(self, queue_name: str) -> int:
        """How many consumers read a queue now (0 for a queue that does not exist)."""
        ...
