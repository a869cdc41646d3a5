"""The conformance check's side of the wire: its commands out, and its own queues for the
replies and dead letters they cause."""

import asyncio
import contextlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
)
from pydantic import ValidationError

from contracts.envelope import Envelope, first_error
from contracts.topology import ORCHESTRATOR_ROUTING_KEY, Topology
from saga.amqp_nodes import connect_pika
from saga.namespaces import nothing_runs
from saga.rabbit import CLOSE_WITHIN

PERSISTENT: Final = aio_pika.DeliveryMode.PERSISTENT


class CheckError(Exception):
    """The check cannot run (RabbitMQ refuses, the participant is not there or does not
    answer): one line saying why."""


@dataclass(frozen=True)
class Received:
    """A reply as it came: its body, and the envelope in it (None: not one, `error` says
    why)."""

    body: bytes
    envelope: Envelope | None
    error: str | None = None


@dataclass(frozen=True)
class Parked:
    """A dead letter as it was published to the namespace's dead-letter exchange."""

    body: bytes
    headers: Mapping[str, Any]
    message_id: str | None


class Wire:
    """One connection: commands published with confirms to the participant, and two
    exclusive queues of the check's own (gone with the connection), bound to the
    namespace's replies exchange (with the orchestrator's routing key) and to its
    dead-letter exchange, where it sees its replies and dead letters as they come."""

    def __init__(
        self,
        connection: AbstractConnection,
        channel: AbstractChannel,
        commands: AbstractExchange,
        topology: Topology,
        participant: str,
        mark: bytes,
    ) -> None:
        self.topology = topology
        self.participant = participant
        self._connection = connection
        self._channel = channel
        self._commands = commands
        self._mark = mark  # in every message of the run: a cheap test for "ours"
        self._sagas: dict[str, str] = {}  # message id -> the saga it was sent for
        self._replies: dict[str, list[Received]] = {}  # by saga
        self._taken: dict[str, set[int]] = {}  # by saga: the replies answers took
        self.strays: list[Received] = []  # replies of the run that name none of its sagas
        self._parked: list[Parked] = []
        self._arrived = asyncio.Condition()

    @classmethod
    async def open(
        cls, url: str, topology: Topology, participant: str, *, mark: str
    ) -> tuple["Wire", int]:
        """Connect and set up; also how many consumers the participant's queue has."""
        name = f"saga participant check ({topology.namespace})"
        connection = await connect_pika(
            url, timeout=10, client_properties={"connection_name": name}
        )
        try:
            consumers = await _consumers(connection, topology, participant)
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            commands = await channel.get_exchange(topology.commands_exchange, ensure=False)
            wire = cls(connection, channel, commands, topology, participant, mark.encode())
            replies = await channel.declare_queue(exclusive=True, auto_delete=True)
            await replies.bind(topology.replies_exchange, routing_key=ORCHESTRATOR_ROUTING_KEY)
            await replies.consume(wire._on_reply, no_ack=True)
            dead = await channel.declare_queue(exclusive=True, auto_delete=True)
            await dead.bind(topology.dead_letter_exchange)
            await dead.consume(wire._on_dead_letter, no_ack=True)
        except BaseException:
            await _close(connection)
            raise
        return wire, consumers

    async def close(self) -> None:
        """Close the connection: the check's queues go with it."""
        await _close(self._connection)

    async def send(
        self, envelope: Envelope, *, body: bytes | None = None, message_id: str | None = None
    ) -> None:
        """Publish a command to the participant as the orchestrator does (or `body` in its
        place), and wait for the broker's confirm."""
        message_id = message_id or envelope.message_id
        self._sagas[message_id] = envelope.saga_id
        message = aio_pika.Message(
            envelope.to_bytes() if body is None else body,
            message_id=message_id,
            correlation_id=envelope.correlation_id,
            type=envelope.type,
            content_type="application/json",
            delivery_mode=PERSISTENT,
        )
        try:
            await self._commands.publish(message, routing_key=self.participant, mandatory=True)
        except aio_pika.exceptions.PublishError as exc:
            raise CheckError(
                f"no queue takes commands for {self.participant} in namespace "
                f"{self.topology.namespace!r}: {exc}"
            ) from exc

    async def answer(
        self, envelope: Envelope, *, within: float, earlier: Iterable[str] = ()
    ) -> Received | None:
        """Send a command and wait for its reply (None: none came in time): a reply about
        its saga that names it (or an `earlier` try of it) as its cause, or names none of
        the check's commands (a wrong cause: the `ids` case tells). A late reply to an
        earlier command of the saga is left alone."""
        await self.send(envelope)
        causes = {envelope.message_id, *earlier}
        saga = envelope.saga_id
        taken = self._taken.setdefault(saga, set())

        def answering() -> int | None:
            for i, reply in enumerate(self._replies.get(saga, ())):
                cause = _fields(reply).get("causation_id", "")
                if i not in taken and (cause in causes or cause not in self._sagas):
                    return i
            return None

        async with self._arrived:
            try:
                await asyncio.wait_for(
                    self._arrived.wait_for(lambda: answering() is not None), within
                )
            except TimeoutError:
                return None
            found = answering()
            assert found is not None
            taken.add(found)
            return self._replies[saga][found]

    @property
    def received(self) -> int:
        """How many replies of the run came, awaited or not."""
        return sum(len(r) for r in self._replies.values()) + len(self.strays)

    def replies_to(self, message_id: str) -> list[Received]:
        """Every reply so far that names this message as its cause."""
        return [
            r
            for found in (*self._replies.values(), self.strays)
            for r in found
            if r.envelope is not None and r.envelope.causation_id == message_id
        ]

    async def dead_letter_of(self, body: bytes, *, within: float) -> Parked | None:
        """The dead letter of a message of this body, once it is parked (None: not in time)."""

        def found() -> Parked | None:
            return next((p for p in self._parked if p.body == body), None)

        async with self._arrived:
            try:
                await asyncio.wait_for(self._arrived.wait_for(lambda: found() is not None), within)
            except TimeoutError:
                return None
            return found()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        if self._mark not in message.body:
            return  # another's reply: the live system's, or another check's
        received = _read(message.body)
        fields = _fields(received)
        saga = next(
            (
                s
                for s in (
                    fields.get("saga_id"),
                    self._sagas.get(fields.get("causation_id") or ""),
                    fields.get("correlation_id"),
                )
                if s in self._sagas.values()
            ),
            None,
        )
        async with self._arrived:
            if saga is None:
                self.strays.append(received)
            else:
                self._replies.setdefault(saga, []).append(received)
            self._arrived.notify_all()

    async def _on_dead_letter(self, message: AbstractIncomingMessage) -> None:
        if self._mark not in message.body:
            return
        parked = Parked(message.body, dict(message.headers or {}), message.message_id)
        async with self._arrived:
            self._parked.append(parked)
            self._arrived.notify_all()


async def _consumers(connection: AbstractConnection, topology: Topology, participant: str) -> int:
    """How many consumers the participant's queue has; CheckError if the namespace or the
    queue is not there (a passive declare that fails closes its channel: one each)."""
    for exchange in topology.all_exchanges():
        channel = await connection.channel()
        try:
            await channel.get_exchange(exchange, ensure=True)
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            raise CheckError(f"no exchange {exchange}: {nothing_runs(topology.namespace)}") from exc
        await channel.close()
    channel = await connection.channel()
    name = topology.participant_queue(participant)
    try:
        queue = await channel.declare_queue(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity as exc:
        raise CheckError(
            f"no queue {name}: no definition names {participant} and it never ran in "
            f"namespace {topology.namespace!r} (is the name right?)"
        ) from exc
    await channel.close()
    return int(queue.declaration_result.consumer_count or 0)


async def _close(connection: aio_pika.abc.AbstractConnection) -> None:
    """Close, waiting no longer than CLOSE_WITHIN for a broker that stopped answering."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(connection.close(), CLOSE_WITHIN)


def _read(body: bytes) -> Received:
    try:
        return Received(body, Envelope.from_bytes(body))
    except ValidationError as exc:
        return Received(body, None, first_error(exc))


def _fields(received: Received) -> dict[str, str]:
    """The ids a reply names, read even from one that is not a valid envelope."""
    if received.envelope is not None:
        data: Any = received.envelope.model_dump()
    else:
        try:
            data = json.loads(received.body)
        except (ValueError, RecursionError):
            return {}
    if not isinstance(data, dict):
        return {}
    names = ("saga_id", "causation_id", "correlation_id")
    return {k: data[k] for k in names if isinstance(data.get(k), str)}
