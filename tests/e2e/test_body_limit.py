"""The 413 reaches every client: one that writes its whole body before it reads the answer
(Python's urllib and http.client, a raw socket) as much as one that reads while it writes."""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.system import free_port
from tests.servers import fresh_namespace

MiB = 1024 * 1024
PATH = "/orders/create_order"
SIZES = [pytest.param(2 * MiB, id="2MiB"), pytest.param(10 * MiB, id="10MiB")]


@dataclass(frozen=True)
class Api:
    """One `saga api` process; its limit is the default 1 MiB."""

    host: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    # The 413 is answered before any route, token or store is involved: this front door
    # points at servers that are not there, so it needs none and leaves nothing on them.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGA_")}
    env |= {
        "SAGA_NAMESPACE": fresh_namespace(),
        "SAGA_REDIS_URL": "redis://127.0.0.1:1/0",
        "SAGA_RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:1/",
        "SAGA_AUTH_URL": "http://127.0.0.1:1",
        "SAGA_LOG_FORMAT": "json",
        "SAGA_LOG_LEVEL": "error",
    }
    port = free_port()
    log: Path = tmp_path_factory.mktemp("api") / "api.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "saga", "api", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Api("127.0.0.1", port, proc)
    try:
        _wait_healthy(running, log)
        yield running
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _wait_healthy(api: Api, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{api.base}/health", timeout=2)
            return
        except httpx.HTTPError:
            assert api.proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)


def _headers(length: int | None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{framing}\r\n\r\n"
    ).encode()


def _pieces(size: int, piece: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, size, piece):
        yield b"x" * min(piece, size - start)


def _chunked(size: int) -> Iterator[bytes]:
    for piece in _pieces(size):
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
    yield b"0\r\n\r\n"


def _read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def _assert_413(status: int, body: bytes) -> None:
    assert status == 413
    assert "larger than 1048576 bytes" in json.loads(body)["detail"]


@pytest.mark.parametrize("size", SIZES)
def test_urllib_writing_its_whole_body_first_reads_the_413(api: Api, size: int) -> None:
    # urllib asks for Connection: close and writes the body in one sendall.
    request = urllib.request.Request(
        f"{api.base}{PATH}", data=b"x" * size, headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    _assert_413(refused.value.code, refused.value.read())


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_http_client_writing_its_whole_body_first_reads_the_413(
    api: Api, size: int, chunked: bool
) -> None:
    connection = http.client.HTTPConnection(api.host, api.port, timeout=30)
    try:
        body = _pieces(size) if chunked else b"x" * size
        connection.request(
            "POST",
            PATH,
            body=body,
            headers={"Content-Type": "application/json"},
            encode_chunked=chunked,
        )
        response = connection.getresponse()
        _assert_413(response.status, response.read())
    finally:
        connection.close()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    "write",
    ["one sendall", "in pieces", "chunked in pieces"],
)
def test_a_raw_socket_writing_its_whole_body_first_reads_the_413(
    api: Api, size: int, write: str
) -> None:
    with socket.create_connection((api.host, api.port), timeout=30) as sock:
        if write == "one sendall":
            sock.sendall(_headers(size) + b"x" * size)
        elif write == "in pieces":
            sock.sendall(_headers(size))
            for piece in _pieces(size):
                sock.sendall(piece)
        else:
            sock.sendall(_headers(None))
            for piece in _chunked(size):
                sock.sendall(piece)
        status, headers, body = _read_answer(sock)
    _assert_413(status, body)
    assert headers["connection"] == "close"


def test_the_413_comes_before_the_body_is_sent(api: Api) -> None:
    # A client that reads as it writes learns at once that it need not send the rest.
    with socket.create_connection((api.host, api.port), timeout=30) as sock:
        sock.sendall(_headers(2 * MiB))
        status, _, body = _read_answer(sock)
    _assert_413(status, body)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_reads_the_413(api: Api, tmp_path: Path) -> None:
    upload = tmp_path / "big.json"
    upload.write_bytes(b"x" * (10 * MiB))
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            f"@{upload}",
            f"{api.base}{PATH}",
        ],
        capture_output=True,
        timeout=60,
    )
    body, _, status = result.stdout.rpartition(b"\n")
    _assert_413(int(status), body)


# What the server reads of a too-large body at most (the limit and 16 MiB past it), and
# what the kernel's buffers on both sides take that the server never reads.
READ_AT_MOST = 1 * MiB + 16 * MiB + 32 * MiB


def _send_until_refused(sock: socket.socket, pieces: Iterator[bytes]) -> int:
    """Bytes sent before the server stopped taking them (it closed the connection)."""
    sent = 0
    try:
        for piece in pieces:
            sock.sendall(piece)
            sent += len(piece)
    except (BrokenPipeError, ConnectionResetError):
        return sent
    raise AssertionError(f"the server took {sent} bytes of an oversized body")


def _plenty(piece: int = MiB) -> Iterator[bytes]:
    """Twice as much as the server may take."""
    for _ in range(2 * READ_AT_MOST // piece):
        yield b"x" * piece


def _plenty_of_chunks(piece: int = MiB) -> Iterator[bytes]:
    for data in _plenty(piece):
        yield b"%x\r\n%s\r\n" % (len(data), data)


def test_a_huge_declared_length_is_not_read(api: Api) -> None:
    with socket.create_connection((api.host, api.port), timeout=30) as sock:
        sock.sendall(_headers(10 * 1024**3))
        sent = _send_until_refused(sock, _plenty())
    assert sent < READ_AT_MOST


def test_a_long_chunked_body_is_read_no_further_than_the_bound(api: Api) -> None:
    with socket.create_connection((api.host, api.port), timeout=30) as sock:
        sock.sendall(_headers(None))
        sent = _send_until_refused(sock, _plenty_of_chunks())
    assert sent < READ_AT_MOST


def test_a_client_that_stops_sending_gets_the_413_and_then_the_connection_closes(
    api: Api,
) -> None:
    with socket.create_connection((api.host, api.port), timeout=60) as sock:
        sock.sendall(_headers(2 * MiB) + b"x" * (64 * 1024))
        status, _, body = _read_answer(sock)
        _assert_413(status, body)
        # The server waits a while for the rest, then gives up on it: end of stream.
        assert sock.recv(1) == b""


def test_the_front_door_serves_on_after_refusing_bodies(api: Api) -> None:
    assert httpx.get(f"{api.base}/health", timeout=10).json() == {"status": "ok"}
