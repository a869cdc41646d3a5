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

Each participant has a circuit breaker: after `threshold` transient failures in a row
its calls are answered `circuit_open` (transient, nothing sent) for `reset_after`
seconds, then one call tries again.
"""

import asyncio
import json
from typing import Any, Final

import httpx
import structlog
from pydantic import ValidationError

from contracts.envelope import Envelope, first_error, trace_id_of, traceparent
from contracts.messages import CommandFailed
from saga.breaker import CircuitBreaker, CircuitOpen
from saga.clock import Clock, utc_now
from saga.core.document import HTTP_SUCCEEDED, HttpSpec
from saga.loops import every
from saga.registry import DefinitionRegistry
from saga.transport import ACK, DeadLetter, Delivery, Outcome, Transport
from services.runtime import reply_id_of

log = structlog.get_logger(__name__)

TRANSIENT_STATUSES: Final = frozenset({408, 429})
MAX_DETAIL: Final = 500


class HttpParticipants:
    """Serves the queues of a namespace's HTTP participants, refreshing the list from
    the registry every `refresh` seconds (a definition applied meanwhile joins)."""

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

    async def run(self, stop: asyncio.Event) -> None:
        """Serve every HTTP participant (those applied meanwhile too) until `stop` is set;
        the calls under way go on until the transport stops consuming."""
        await every(self._refresh, stop, self.serve_new, name="http participants")

    async def aclose(self) -> None:
        """Close the HTTP client, once nothing consumes any more."""
        await self._client.aclose()

    async def serve_new(self) -> int:
        """Start consuming the queue of every HTTP participant not served yet; how many
        there were."""
        found = await self._registry.http_participants()
        new = {name: spec for name, spec in found.items() if name not in self._served}
        if not new:
            return 0
        await self._transport.declare_participants(new)
        for name, spec in new.items():
            self._served[name] = spec
            self._breakers[name] = CircuitBreaker(
                threshold=spec.breaker.threshold,
                reset_after=spec.breaker.reset_after.total_seconds(),
            )
            queue = self._transport.topology.participant_queue(name)
            await self._transport.consume(queue, self._handler(name))
            log.info("serving HTTP participant", participant=name, url=str(spec.url))
        return 0  # and then wait `refresh` before looking again

    def _handler(self, name: str) -> Any:
        async def handle(delivery: Delivery) -> Outcome:
            return await self.handle(name, delivery)

        return handle

    async def handle(self, name: str, delivery: Delivery) -> Outcome:
        """Call the endpoint for one command, publish the answer as its reply, then ack."""
        try:
            command = Envelope.from_bytes(delivery.body)
        except ValidationError as exc:
            return DeadLetter(f"unparseable command: {first_error(exc)}")
        reply_type, payload = await self.call(name, command)
        reply_id = reply_id_of(command.message_id)
        trace_id = trace_id_of(command.traceparent)
        await self._transport.publish_reply(
            Envelope(
                message_id=reply_id,
                saga_id=command.saga_id,
                correlation_id=command.correlation_id,
                causation_id=command.message_id,
                type=reply_type,
                sent_at=self._clock(),
                payload=payload,
                traceparent=traceparent(trace_id, reply_id[:16]) if trace_id else None,
            )
        )
        log.info(
            "HTTP command handled",
            participant=name,
            saga_id=command.saga_id,
            command=command.type,
            outcome=reply_type,
            reason=payload.get("reason") if reply_type == CommandFailed.__name__ else None,
        )
        return ACK

    async def call(self, name: str, command: Envelope) -> tuple[str, dict[str, Any]]:
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
        try:
            response = await self._client.post(
                url, json=command.payload, headers=headers, timeout=spec.timeout.total_seconds()
            )
        except httpx.ConnectError as exc:  # not connected: nothing was sent
            breaker.failed()
            return _failed("unreachable", f"{url}: {exc!r}", transient=True)
        except httpx.TimeoutException:
            breaker.failed()
            detail = f"no answer from {url} within {spec.timeout}"
            return _failed("timeout", detail, transient=True, unknown=True)
        except httpx.HTTPError as exc:  # cut off mid-call
            breaker.failed()
            return _failed("unreachable", f"{url}: {exc!r}", transient=True, unknown=True)
        status = response.status_code
        if status >= 500 or status in TRANSIENT_STATUSES:
            breaker.failed()
            # 408 and 429: not taken on. A 5xx may have done part of the work.
            return _failed(f"http_{status}", _text(response), transient=True, unknown=status >= 500)
        breaker.succeeded()
        if status >= 400:
            body = _json_object(response)
            reason = body.get("reason") if body else None
            if not isinstance(reason, str) or not reason or len(reason) > 64:
                reason = f"http_{status}"
            said = body.get("detail") if body else None
            return _failed(reason, str(said) if said else _text(response), transient=False)
        if 200 <= status < 300:
            result = {} if not response.content else _json_object(response)
            if result is not None:
                return HTTP_SUCCEEDED, result
        return _failed(
            "protocol_error",
            f"HTTP {status} without a JSON object: {_text(response)}",
            transient=False,
            unknown=True,
        )


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _text(response: httpx.Response) -> str:
    return f"HTTP {response.status_code}: {response.text[:MAX_DETAIL]}"


def _failed(
    reason: str, detail: str, *, transient: bool, unknown: bool = False
) -> tuple[str, dict[str, Any]]:
    failure = CommandFailed(
        reason=reason, detail=detail[:1000], transient=transient, effect_unknown=unknown
    )
    return CommandFailed.__name__, failure.model_dump(mode="json")
