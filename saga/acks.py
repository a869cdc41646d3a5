"""Acks gathered per channel: one basic.ack with `multiple` for a run of finished deliveries.

An ack is a frame, and a frame is a write on the socket; under load most of the acks a
consumer sends are for deliveries that finished within a few milliseconds of each
other. So a finished delivery's ack waits `delay`, then one ack covers every delivery
up to the newest finished one whose elders are all finished (or settled otherwise). A
finished delivery behind one still being handled is acked alone in the same round: no
ack waits longer than `delay` for a slow neighbour.

Only deliveries whose handling is over are ever acked. A channel's delivery tags are
consecutive, so a tag not seen yet (its delivery still on its way to the handler)
stops the run as surely as one being handled. A channel that closes takes its
unacked deliveries back to the queue, to be delivered again and recognised as
duplicates.
"""

import asyncio
import contextlib
from typing import Literal

import structlog
from aiormq.abc import DeliveredMessage

from saga.amqp_errors import AMQP_OUTAGES
from saga.transport import TransportUnavailable

log = structlog.get_logger(__name__)

_State = Literal["handling", "finished", "settled"]


class AckBatcher:
    """Batches the acks of one consumer channel."""

    def __init__(self, *, delay: float = 0.005) -> None:
        self._delay = delay
        self._held: dict[int, tuple[DeliveredMessage, _State]] = {}
        self._channel: object | None = None
        self._low = 0  # the oldest tag of the channel not yet acked or settled
        self._flushing: asyncio.Task[None] | None = None

    def received(self, message: DeliveredMessage) -> None:
        """A delivery arrived (call before anything else is awaited for it)."""
        tag = delivery_tag(message)
        if message.channel is not self._channel:
            # A new channel (after a reconnect): the old one's deliveries went back to
            # their queue with it; their tags mean nothing any more.
            self._held.clear()
            self._channel, self._low = message.channel, tag
        self._held[tag] = (message, "handling")

    def done(self, message: DeliveredMessage) -> None:
        """The delivery was handled: ack it soon, with its neighbours."""
        if self._mark(message, "finished") and self._flushing is None:
            self._flushing = asyncio.create_task(self._flush_soon())

    def settled(self, message: DeliveredMessage) -> None:
        """The delivery was settled on its own (requeued, or dead-lettered and acked):
        call once its ack or nack is sent, so that no `multiple` ack goes before it."""
        self._mark(message, "settled")

    async def flush(self) -> None:
        """Ack every finished delivery now (before the consumer stops)."""
        if self._flushing is not None:
            self._flushing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flushing
        await self._ack_finished()

    def _mark(self, message: DeliveredMessage, state: _State) -> bool:
        tag = delivery_tag(message)
        if message.channel is not self._channel or tag not in self._held:
            return False
        self._held[tag] = (message, state)
        return True

    async def _flush_soon(self) -> None:
        try:
            await asyncio.sleep(self._delay)
            await self._ack_finished()
        finally:
            self._flushing = None

    async def _ack_finished(self) -> None:
        # The run from the oldest tag: consecutive, every one finished or settled.
        run: DeliveredMessage | None = None
        while (entry := self._held.get(self._low)) is not None and entry[1] != "handling":
            message, state = self._held.pop(self._low)
            if state == "finished":
                run = message
            self._low += 1
        # Finished ones behind a gap: alone, and remembered as settled until the run
        # reaches them.
        alone = [m for m, state in self._held.values() if state == "finished"]
        for message in alone:
            self._held[delivery_tag(message)] = (message, "settled")
        try:
            # Not waiting for the socket to drain: an ack is never confirmed either way,
            # and frames queued together leave in one write (saga/socket_writes.py).
            if run is not None:
                await run.channel.basic_ack(delivery_tag(run), multiple=True, wait=False)
            for message in alone:
                await message.channel.basic_ack(delivery_tag(message), wait=False)
        except (TransportUnavailable, *AMQP_OUTAGES) as exc:
            # The channel is gone and took the deliveries back: they come again.
            log.warning("acks lost with their channel", error=repr(exc))


def delivery_tag(message: DeliveredMessage) -> int:
    """The channel's number for a consumed delivery."""
    assert message.delivery_tag is not None, "a consumed delivery has a tag"
    return message.delivery_tag
