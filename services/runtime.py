"""The participant runtime: consume a command, validate, deduplicate, handle, reply.

A service that fails on a command other than for an outage (a Redis error from its own
script, a bug) answers it `CommandFailed` with reason `participant_error` and the error's
text: the same command would fail the same way on every delivery, so trying it again
only hides the cause behind a timeout. The answer is not transient (the saga does not
try again: it compensates, with the truthful reason) and its effect is unknown (a Lua
script that fails half-way keeps what it wrote; so does Python code), so the step itself
is undone too. An outage (Redis or RabbitMQ away) is left to the transport, which waits
it out with the command in hand.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Protocol

import structlog
from pydantic import ValidationError

from contracts.envelope import Envelope, first_error, reply_to, trace_id_of
from contracts.idempotency import key_fields
from contracts.messages import CommandFailed, Message
from contracts.topology import Participant
from saga.clock import Clock, utc_now
from saga.handling import INFRASTRUCTURE_ERRORS
from saga.metrics import commands_handled
from saga.transport import (
    ACK,
    DeadLetter,
    Delivery,
    Outcome,
    Transport,
    error_text,
)
from services.messages import REPLIES

log = structlog.get_logger(__name__)

_REPLIES: Final[dict[str, type[Message]]] = {**REPLIES, CommandFailed.__name__: CommandFailed}

# Replies are named after their command: the same command always gets the same reply id,
# so the orchestrator recognises a repeated reply as the duplicate it is.

Reply = tuple[str, dict[str, Any]]

# Why a command failed when the participant itself failed on it.
PARTICIPANT_ERROR: Final = "participant_error"


class ParticipantService(Protocol):
    """What a participant implements; the runtime does the rest."""

    name: Participant
    commands: Mapping[str, type[Message]]

    async def handle(self, envelope: Envelope, command: Message, *, now: datetime) -> Reply:
        """Do the command at most once (by its idempotency key) and return the reply."""
        ...


def failed(reason: str, detail: str | None = None, *, effect_unknown: bool = False) -> Reply:
    """A CommandFailed reply with a machine-readable reason."""
    failure = CommandFailed(reason=reason, detail=detail, effect_unknown=effect_unknown)
    return CommandFailed.__name__, failure.model_dump(mode="json")


class ParticipantRuntime:
    """Runs one participant service on the transport."""

    def __init__(
        self,
        service: ParticipantService,
        transport: Transport,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self._service = service
        self._transport = transport
        self._clock = clock

    async def run(self) -> None:
        """Start consuming the participant's queue."""
        queue = self._transport.topology.participant_queue(self._service.name)
        await self._transport.consume(queue, self.handle)

    async def handle(self, delivery: Delivery) -> Outcome:
        """Handle one delivered command: reply, then ack (or dead-letter it)."""
        try:
            envelope = Envelope.from_bytes(delivery.body)
        except ValidationError as exc:
            return DeadLetter(f"unparseable command: {first_error(exc)}")
        trace_id = trace_id_of(envelope.traceparent)
        reply_type, payload = await self._answer(envelope, trace_id)
        await self._transport.publish_reply(
            reply_to(envelope, reply_type, payload, at=self._clock())
        )
        commands_handled(self._service.name, envelope.type, reply_type).inc()
        log.info(
            "command handled",
            saga_id=envelope.saga_id,
            message_id=envelope.message_id,
            command=envelope.type,
            **key_fields(envelope.idempotency_key),
            trace_id=trace_id,
            outcome=reply_type,
            reason=payload.get("reason") if reply_type == CommandFailed.__name__ else None,
        )
        return ACK

    async def _answer(self, envelope: Envelope, trace_id: str | None) -> Reply:
        """The service's reply to the command, or, if the service fails on it other than
        for an outage, its failure as the reply."""
        try:
            reply_type, payload = await self._reply_to(envelope)
            # A reply that breaks the contract is the service's bug like any other.
            _REPLIES[reply_type].model_validate(payload)
        except INFRASTRUCTURE_ERRORS:
            raise  # an outage: the transport waits it out, with the command in hand
        except Exception as exc:
            log.exception(
                "participant failed on a command",
                saga_id=envelope.saga_id,
                message_id=envelope.message_id,
                command=envelope.type,
                **key_fields(envelope.idempotency_key),
                trace_id=trace_id,
                error=error_text(exc),
            )
            return failed(PARTICIPANT_ERROR, error_text(exc)[:1000], effect_unknown=True)
        return reply_type, payload

    async def _reply_to(self, envelope: Envelope) -> Reply:
        model = self._service.commands.get(envelope.type)
        if model is None:
            return failed(
                "unknown_command", f"{self._service.name} does not handle {envelope.type}"
            )
        try:
            command = model.model_validate(envelope.payload)
        except ValidationError as exc:
            return failed("invalid_command", str(exc)[:1000])
        return await self._service.handle(envelope, command, now=self._clock())
