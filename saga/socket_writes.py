"""Frames written to the broker in one turn of the event loop, sent in one system call.

aiormq writes every frame (a publish, an ack) to its socket on its own, and on loopback
each write is a system call that also delivers the bytes to the broker: py-spy put a
fifth to a quarter of every process's CPU in those writes under `saga bench`. When a
batch of Redis answers resumes many handlers at once, each publishes in the same turn
of the loop; joined, their frames cost one call. Nothing waits longer than that turn:
the joined bytes leave before the loop next waits for its sockets.
"""

import asyncio
from typing import Any, cast

from aiormq.connection import TCPTransportFactory, TLSTransportFactory, TransportFactory
from yarl import URL


class _JoinedWrites:
    """A StreamWriter whose writes made in one turn of the loop go out as one.

    Order is kept (one buffer, sent whole); `drain`, `write_eof` and `close` send what
    is buffered first, so anything awaited or closed has left.
    """

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._buffer: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer `data`; it leaves at the end of this turn of the loop."""
        if not self._buffer:
            self._loop.call_soon(self._send)
        self._buffer.append(bytes(data))

    def _send(self) -> None:
        if not self._buffer:
            return  # sent already by a drain, a close or an end of file
        buffered, self._buffer = self._buffer, []
        self._writer.write(buffered[0] if len(buffered) == 1 else b"".join(buffered))

    async def drain(self) -> None:
        """Send what is buffered, then wait until the socket takes more."""
        self._send()
        await self._writer.drain()

    def write_eof(self) -> None:
        """Send what is buffered, then the end of the stream."""
        self._send()
        self._writer.write_eof()

    def close(self) -> None:
        """Send what is buffered, then close."""
        self._send()
        self._writer.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


class JoinedWritesFactory(TransportFactory):
    """aiormq's own way to connect (TCP, or TLS for amqps), with writes joined per turn."""

    async def create(
        self, url: URL, **kwargs: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect as aiormq would, and give it a writer that joins writes."""
        inner = TLSTransportFactory() if url.scheme == "amqps" else TCPTransportFactory()
        reader, writer = await inner.create(url, **kwargs)
        return reader, cast(asyncio.StreamWriter, _JoinedWrites(writer))
