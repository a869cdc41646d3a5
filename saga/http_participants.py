"""Participants over HTTP: each command in such a participant's queue becomes a POST to
its endpoint, and the answer becomes the reply.

Commands reach an HTTP participant the way they reach any participant — through the
outbox, published to its queue `<ns>.<participant>` — so they wait there while the
endpoint or this process is away, and a command whose call was cut short by a crash
is delivered (and called) again. Every orchestrator runs this bridge for every HTTP
participant its definitions name. A call carries `Idempotency-Key: <saga>:<step>:
<action>`, the same on every retry and redelivery, so an endpoint that honours it does
the work once.

    2xx, a JSON object (or no body)   success: the object is the step's result
    4xx (not 408 or 429)              a business failure: the saga compensates
    5xx, 408, 429, timeout, no answer transient: retried under the step's policy; its
                                      effect is unknown, so a step that runs out of
                                      tries is compensated too
    anything else                     a protocol error (effect unknown)

A body is read up to MAX_BODY bytes; a longer one is a protocol error. The URL and what
an endpoint said beyond its `reason` and `detail` go to this process's log, not into
the saga's events (which its customer may read).

Each participant has a circuit breaker: after `threshold` transient failures in a row
its calls are answered `circuit_open` (transient, nothing sent) for `reset_after`
seconds, then one call tries again.
"""

import asyncio
import functools
import json
import re
from collections import OrderedDict
from typing import Any, Final

import httpx
import structlog
from pydantic import ValidationError

from contracts.envelope import Envelope, first_error, reply_to
from contracts.idempotency import key_fields
from contracts.messages import CommandFailed
from saga.breaker import CircuitBreaker, CircuitOpen
from saga.clock import Clock, utc_now
from saga.core.document import HTTP_SUCCEEDED, TYPE_PATTERN, HttpSpec
from saga.loops import every
from saga.registry import DefinitionRegistry
from saga.transport import ACK, DeadLetter, Delivery, Outcome, Transport

log = structlog.get_logger(__name__)

TRANSIENT_STATUSES: Final = frozenset({408, 429})
MAX_BODY: Final = 64 * 1024
MAX_DETAIL: Final = 500
TYPE: Final = re.compile(TYPE_PATTERN)
# Replies computed lately, by command id: a reply whose publishing failed is published
# again without calling the endpoint again.
REMEMBERED: Final = 1024

Reply = tuple[str, dict[str, Any]]


class HttpParticipants:
    """Serves the queues of a namespace's HTTP participants, and declares the queues of
    all its participants, refreshing both from the registry every `refresh` seconds (a
    definition applied meanwhile joins)."""

    def __init__(
        self,
        registry: DefinitionRegistry,
        transport: Transport,
        *,
        client: httpx.AsyncClient | None = None,
        refresh: float = 2.0,
        clock: Clock = utc_now,
    ) -> None:
        self._registry = registry
        self._transport = transport
        self._client = client or httpx.AsyncClient()
        self._refresh = refresh
        self._clock = clock
        self._served: dict[str, HttpSpec] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._replies: OrderedDict[str, Reply] = OrderedDict()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve every HTTP participant (those applied meanwhile too) until `stop` is set;
        the calls under way go on until the transport stops consuming."""
        await every(self._refresh, stop, self.refresh, name="participants")

    async def aclose(self) -> None:
        """Close the HTTP client, once nothing consumes any more."""
        await self._client.aclose()

    async def refresh(self) -> int:
        """Declare every participant's queue (a process that registered a definition may
        have failed to), and serve the HTTP participants not served yet. Returns 0: the
        next look is after `refresh` seconds."""
        await self._transport.declare_participants(await self._registry.participants())
        found = await self._registry.http_participants()
        for name, spec in found.items():
            if name in self._served:
                continue
            self._breakers[name] = CircuitBreaker(
                threshold=spec.breaker.threshold,
                reset_after=spec.breaker.reset_after.total_seconds(),
            )
            queue = self._transport.topology.participant_queue(name)
            self._served[name] = spec  # before consuming: commands may be waiting
            try:
                await self._transport.consume(queue, functools.partial(self.handle, name))
            except BaseException:
                del self._served[name]  # tried again next time
                raise
            log.info("serving HTTP participant", participant=name, url=str(spec.url))
        return 0

    async def handle(self, name: str, delivery: Delivery) -> Outcome:
        """Call the endpoint for one command, publish the answer as its reply, then ack."""
        try:
            command = Envelope.from_bytes(delivery.body)
        except ValidationError as exc:
            return DeadLetter(f"unparseable command: {first_error(exc)}")
        if not TYPE.fullmatch(command.type):  # it becomes part of the URL
            return DeadLetter(f"command type {command.type!r} cannot name an endpoint")
        reply = self._replies.get(command.message_id)
        if reply is None:
            reply = self._replies[command.message_id] = await self.call(name, command)
            while len(self._replies) > REMEMBERED:
                self._replies.popitem(last=False)
        reply_type, payload = reply
        await self._transport.publish_reply(
            reply_to(command, reply_type, payload, at=self._clock())
        )
        self._replies.pop(command.message_id, None)
        log.info(
            "HTTP command handled",
            participant=name,
            saga_id=command.saga_id,
            message_id=command.message_id,
            command=command.type,
            **key_fields(command.idempotency_key),
            outcome=reply_type,
            reason=payload.get("reason") if reply_type == CommandFailed.__name__ else None,
        )
        return ACK

    async def call(self, name: str, command: Envelope) -> Reply:
        """The reply (type, payload) to one command, from its endpoint's answer."""
        spec, breaker = self._served[name], self._breakers[name]
        try:
            breaker.before_call()
        except CircuitOpen as exc:
            return _failed("circuit_open", str(exc), transient=True)  # nothing was sent
        url = f"{str(spec.url).rstrip('/')}/{command.type}"
        headers = {
            "Idempotency-Key": command.idempotency_key or command.message_id,
            "X-Saga-Id": command.saga_id,
            "X-Saga-Command": command.type,
            "X-Message-Id": command.message_id,
        }
        if command.traceparent:
            headers["traceparent"] = command.traceparent
        timeout = spec.timeout.total_seconds()
        try:
            async with self._client.stream(
                "POST", url, json=command.payload, headers=headers, timeout=timeout
            ) as response:
                content = await _read(response)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            breaker.failed()  # not connected: nothing was sent
            log.warning("HTTP participant unreachable", participant=name, url=url, error=repr(exc))
            return _failed("unreachable", f"{name} could not be reached", transient=True)
        except httpx.TimeoutException:
            breaker.failed()
            detail = f"no answer from {name} within {spec.timeout}"
            return _failed("timeout", detail, transient=True, unknown=True)
        except httpx.HTTPError as exc:  # cut off mid-call
            breaker.failed()
            log.warning("HTTP call cut off", participant=name, url=url, error=repr(exc))
            return _failed(
                "unreachable", f"the call to {name} was cut off", transient=True, unknown=True
            )
        status = response.status_code
        if content is None:
            breaker.succeeded()
            detail = f"HTTP {status} with a body over {MAX_BODY} bytes"
            return _failed("protocol_error", detail, transient=False, unknown=True)
        answer = _json_object(content)
        if status >= 500 or status in TRANSIENT_STATUSES:
            breaker.failed()
            log.warning(
                "HTTP participant failed",
                participant=name,
                status=status,
                body=content[:MAX_DETAIL],
            )
            # 408 and 429: not taken on. A 5xx may have done part of the work.
            return _failed(
                f"http_{status}", _said(status, answer), transient=True, unknown=status >= 500
            )
        breaker.succeeded()
        if status >= 400:
            reason = answer.get("reason") if answer else None
            if not isinstance(reason, str) or not reason or len(reason) > 64:
                reason = f"http_{status}"
            return _failed(reason, _said(status, answer), transient=False)
        if 200 <= status < 300:
            result = {} if not content else answer
            if result is not None:
                return HTTP_SUCCEEDED, result
        log.warning(
            "HTTP participant broke the protocol",
            participant=name,
            status=status,
            body=content[:MAX_DETAIL],
        )
        detail = f"HTTP {status} without a JSON object"
        return _failed("protocol_error", detail, transient=False, unknown=True)


async def _read(response: httpx.Response) -> bytes | None:
    """The body, or None if it is longer than MAX_BODY (the rest is not read)."""
    content = bytearray()
    async for chunk in response.aiter_bytes():
        content += chunk
        if len(content) > MAX_BODY:
            return None
    return bytes(content)


def _json_object(content: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _said(status: int, answer: dict[str, Any] | None) -> str:
    """What the endpoint said of a failure: its `detail`, or only its status."""
    detail = answer.get("detail") if answer else None
    return f"HTTP {status}: {str(detail)[:MAX_DETAIL]}" if detail else f"HTTP {status}"


def _failed(reason: str, detail: str, *, transient: bool, unknown: bool = False) -> Reply:
    failure = CommandFailed(
        reason=reason, detail=detail[:1000], transient=transient, effect_unknown=unknown
    )
    return CommandFailed.__name__, failure.model_dump(mode="json")
