"""Frames written in one turn of the event loop leave in one write, in order."""

import asyncio
from typing import cast

from saga.socket_writes import _JoinedWrites


class Recorder:
    """A StreamWriter's writing side that records each write it is given."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.events: list[str] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    async def drain(self) -> None:
        self.events.append(f"drain after {len(self.writes)}")

    def close(self) -> None:
        self.events.append(f"close after {len(self.writes)}")

    def is_closing(self) -> bool:
        return False


def joined(recorder: Recorder) -> _JoinedWrites:
    return _JoinedWrites(cast(asyncio.StreamWriter, recorder))


async def test_writes_of_one_turn_leave_as_one_in_order() -> None:
    recorder = Recorder()
    writer = joined(recorder)
    for frame in (b"a", b"bb", b"ccc"):
        writer.write(frame)
    assert recorder.writes == []
    await asyncio.sleep(0)
    assert recorder.writes == [b"abbccc"]
    writer.write(b"d")
    await asyncio.sleep(0)
    assert recorder.writes == [b"abbccc", b"d"]


async def test_drain_and_close_send_what_is_buffered_first() -> None:
    recorder = Recorder()
    writer = joined(recorder)
    writer.write(b"a")
    await writer.drain()
    writer.write(b"b")
    writer.close()
    await asyncio.sleep(0)  # the turn's own send finds nothing left
    assert recorder.writes == [b"a", b"b"]
    assert recorder.events == ["drain after 1", "close after 2"]


async def test_anything_else_is_the_writer_s_own() -> None:
    assert joined(Recorder()).is_closing() is False
