"""Message bodies a hostile trial parked: every operator command must survive each."""

HOSTILE: dict[str, bytes] = {
    "empty": b"",
    "not utf-8": b"\xff\xfe\x00\xc3(\x80 garbage \xe2\x82",
    "huge": b'{"type": "' + b"A" * (3 * 1024 * 1024) + b'", "saga_id": "s-huge"}',
    "deeply nested array": b"[" * 200_000 + b"]" * 200_000,
    "deeply nested object": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "truncated json": b'{"message_id": "m1", "saga_id": "s1", "type": "ReserveSt',
    "json not an object": b'["ReserveStock", "s1", 3]',
    "odd field types": b'{"type": 7, "saga_id": {"x": [1]}, "message_id": null}',
    "terminal escapes": b"\x1b[2J\x1b]0;pwned\x07\r\x08\x08 \xe2\x80\xae reversed \x00\n",
    "rich markup": b'{"type": "[/]", "saga_id": "[bold red]s1\\u001b[2J[/bold red]"}',
}
