"""Text from untrusted bytes and values, safe to print: nothing a terminal acts on, bounded."""

import codecs
import reprlib
from typing import Final

ELLIPSIS: Final = "…"
_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# A value of another kind (a header may hold a table, a list, a number) is shown as a
# repr of bounded size and depth.
_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = _REPR.maxother = 200


def printable(text: str, *, limit: int, cut: bool = False) -> str:
    """`text` with every character a terminal would act on escaped (a newline as \\n, an
    escape as \\x1b, a bidi override as \\u202e), at most `limit` bytes of UTF-8; it ends
    in … when something was left out here, or before (`cut`)."""
    pieces = [char if char.isprintable() else _escaped(char) for char in text]
    if not cut and sum(len(piece.encode()) for piece in pieces) <= limit:
        return "".join(pieces)
    room = limit - len(ELLIPSIS.encode())
    kept: list[str] = []
    for piece in pieces:
        room -= len(piece.encode())
        if room < 0:
            break
        kept.append(piece)
    return "".join(kept) + ELLIPSIS


def preview(body: bytes, *, limit: int) -> str:
    """The start of a message body as safe text of at most `limit` bytes; bytes that are
    not UTF-8 show as �."""
    head = body[:limit]
    # A character the cut splits is left out, not shown as a broken one.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = decoder.decode(head, final=len(body) <= limit)
    return printable(text, limit=limit, cut=len(body) > limit)


def as_text(value: object, *, limit: int) -> str:
    """Any value (a header's, a JSON field's) as safe text of at most `limit` bytes."""
    if isinstance(value, bytes | bytearray):
        return preview(bytes(value), limit=limit)
    if isinstance(value, str):
        return printable(value[:limit], limit=limit, cut=len(value) > limit)
    return printable(_REPR.repr(value), limit=limit)


def _escaped(char: str) -> str:
    code = ord(char)
    if char in _ESCAPES:
        return _ESCAPES[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
