"""Participants over HTTP: each command in such a participant's queue becomes a POST to
its endpoint, and the answer becomes the reply.

Commands reach an HTTP participant the way they reach any participant — through the
outbox, published to its queue `<ns>.<participant>` — so they wait there while the
endpoint or this process is away, and a command whose call was cut short by a crash
is delivered (and called) again. Every orchestrator runs this bridge for every HTTP
participant its definitions name. A call carries `Idempotency-Key: <saga>:<step>:
<action>`, the same on every retry and redelivery, so an endpoint that honours it does
the work once.

What each answer (or its absence) means is the table of `saga.http_answers`: a 2xx
with a JSON object is success, a 4xx a business failure, a 5xx, 408, 429, timeout or
lost connection transient (and a 5xx, a timeout or a cut call of unknown effect), the
rest a protocol error. A body is read up to MAX_BODY bytes. The URL and what an
endpoint said beyond its `reason` and `detail` go to this process's log, not into the
saga's events (which its customer may read).

Each participant has a circuit breaker: after `threshold` transient failures in a row
its calls are answered `circuit_open` (transient, nothing sent) for `reset_after`
seconds, then one call tries again.
"""

import asyncio
import functools
import re
from collections import OrderedDict
from typing import Final

import httpx
import structlog
from pydantic import ValidationError

from contracts.envelope import Envelope, first_error, reply_to
from contracts.idempotency import key_fields
from contracts.messages import CommandFailed
from saga.breaker import CircuitBreaker, CircuitOpen
from saga.clock import Clock, utc_now
from saga.core.document import TYPE_PATTERN, HttpSpec
from saga.core.reasons import PROTOCOL_ERROR
from saga.http_answers import (
    MAX_BODY,
    MAX_DETAIL,
    Answered,
    Reply,
    Unanswered,
    circuit_open,
    verdict,
)
from saga.loops import every
from saga.registry import DefinitionRegistry
from saga.transport import ACK, DeadLetter, Delivery, Outcome, Transport

log = structlog.get_logger(__name__)

TYPE: Final = re.compile(TYPE_PATTERN)
# Replies computed lately, by command id: a reply whose publishing failed is published
# again without calling the endpoint again.
REMEMBERED: Final = 1024


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
            return circuit_open(str(exc)).reply  # nothing was sent
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
        outcome: Answered | Unanswered
        try:
            async with self._client.stream(
                "POST", url, json=command.payload, headers=headers, timeout=timeout
            ) as response:
                outcome = Answered(response.status_code, await _read(response))
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            log.warning("HTTP participant unreachable", participant=name, url=url, error=repr(exc))
            outcome = Unanswered("unreachable")  # not connected: nothing was sent
        except httpx.TimeoutException:
            outcome = Unanswered("timeout")
        except httpx.HTTPError as exc:
            log.warning("HTTP call cut off", participant=name, url=url, error=repr(exc))
            outcome = Unanswered("cut_off")
        judged = verdict(outcome, participant=name, timeout=spec.timeout)
        if judged.endpoint_failed:
            breaker.failed()
        else:
            breaker.succeeded()
        broke = judged.payload.get("reason") == PROTOCOL_ERROR
        if isinstance(outcome, Answered) and (judged.endpoint_failed or broke):
            log.warning(
                "HTTP participant broke the protocol" if broke else "HTTP participant failed",
                participant=name,
                status=outcome.status,
                body=(outcome.body or b"")[:MAX_DETAIL],
            )
        return judged.reply


async def _read(response: httpx.Response) -> bytes | None:
    """The body, or None if it is longer than MAX_BODY (the rest is not read)."""
    content = bytearray()
    async for chunk in response.aiter_bytes():
        content += chunk
        if len(content) > MAX_BODY:
            return None
    return bytes(content)
