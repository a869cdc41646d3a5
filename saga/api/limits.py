"""Limits of the front door: a per-customer rate (a token bucket in Redis) and a body size."""

import asyncio
import contextlib
import math
import re
from dataclasses import dataclass
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from saga.connections import AnyRedis, once_more

_PERIODS: Final = {"second": 1, "minute": 60, "hour": 3600}

# KEYS: the bucket. ARGV: capacity, refill per second. Redis's own clock, so that every
# front door replica agrees. Returns {allowed, seconds to wait for one token}.
_TAKE: Final = """
local capacity, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or capacity)
local last = tonumber(redis.call('HGET', KEYS[1], 'at') or now)
tokens = math.min(capacity, tokens + (now - last) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 1)
if allowed == 1 then return {1, '0'} end
return {0, tostring((1 - tokens) / rate)}
"""


@dataclass(frozen=True)
class Rate:
    """`count` requests per `period` seconds, in bursts of up to `count`."""

    count: int
    period: int

    @classmethod
    def parse(cls, text: str) -> "Rate":
        """`20/second`, `600/minute`, `1000/hour`."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(second|minute|hour)\s*", text)
        if not match or int(match.group(1)) < 1:
            raise ValueError(f"a rate is like 20/second or 600/minute, not {text!r}")
        return cls(int(match.group(1)), _PERIODS[match.group(2)])


class RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limit exceeded; retry in {retry_after:.2f}s")
        self.retry_after = retry_after


class RateLimiter:
    """One token bucket per customer, shared by every replica through Redis."""

    def __init__(self, redis: AnyRedis, namespace: str, rate: Rate) -> None:
        self._redis = redis
        self._take = redis.register_script(_TAKE)
        self._ns = namespace
        self._rate = rate

    async def take(self, customer: str) -> None:
        """Spend one token of the customer's; raises RateLimited when there is none."""
        # Made once more on a dead connection (after a Redis restart): at worst a token
        # is spent twice, which is better than refusing the request.
        allowed, wait = await once_more(
            self._redis,
            lambda: self._take(
                keys=[f"{self._ns}:ratelimit:{customer}"],
                args=[self._rate.count, self._rate.count / self._rate.period],
            ),
        )
        if int(allowed) != 1:
            raise RateLimited(float(wait))


def retry_after(seconds: float) -> str:
    """A Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


# A client that writes its whole body before it reads the answer (Python's urllib and
# http.client, requests) finds the 413 only if the server reads what it sends: closing
# with bytes unread makes the kernel reset the connection, and the reset throws away the
# answer the client has not read yet. So, as nginx's lingering close does, the rest of a
# too-large body is read and thrown away before the connection closes, within bounds: at
# most DRAIN_BYTES past the limit (a client writing up to 16 MiB more than the limit
# before it reads still gets its answer; reading more would let one request cost the
# server unbounded work, and a byte is discarded as it comes, so memory is never at
# stake), for DRAIN_TIME in all, and while a byte comes at least every DRAIN_IDLE.
DRAIN_BYTES: Final = 16 * 1024 * 1024
DRAIN_TIME: Final = 30.0
DRAIN_IDLE: Final = 5.0


class BodySizeLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 and is not kept.

    The body is read (up to the limit) before the app sees it, then handed on whole. A
    too-large one is answered at once (a client that reads while it writes stops there);
    then the rest of it is read and discarded, within bounds, so that a client that
    writes all before it reads finds the answer too; then the connection closes.
    """

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self._app = app
        self._limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self._limit:
            # Past the bound, the rest is not worth reading: the answer goes at once.
            drain = declared <= self._limit + DRAIN_BYTES
            await self._too_large(receive, send, read=0, drain=drain)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self._limit:
                more = bool(message.get("more_body", False))
                await self._too_large(receive, send, read=size, drain=more)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self._app(scope, replay, send)

    async def _too_large(self, receive: Receive, send: Send, *, read: int, drain: bool) -> None:
        """Send the whole 413 (its length said, so the client needs nothing more), read
        and discard the rest of the body if `drain`, then end the response: the server
        closes the connection (`Connection: close`), whose body is not read to its end."""
        body = b'{"detail":"request body larger than %d bytes"}' % self._limit
        headers: list[Any] = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": True})
        if drain:
            await _discard_body(receive, budget=self._limit + DRAIN_BYTES - read)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, if it has a well-formed one."""
    declared = dict(scope.get("headers") or []).get(b"content-length")
    return int(declared) if declared is not None and declared.isdigit() else None


async def _discard_body(receive: Receive, *, budget: int) -> None:
    """Read and throw away the rest of a request body: until its end, the client going
    away, `budget` bytes, DRAIN_TIME, or DRAIN_IDLE without a byte, whichever comes first."""
    # Running out of time is one of the ends: the caller closes the connection then.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_TIME):
            while budget > 0:
                async with asyncio.timeout(DRAIN_IDLE):
                    message = await receive()
                if message["type"] != "http.request":
                    return
                budget -= len(message.get("body", b""))
                if not message.get("more_body", False):
                    return
