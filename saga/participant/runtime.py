"""The participant runtime: take a command, answer it once per idempotency key, reply, ack.

For each delivery: a body that is not an envelope is dead-lettered with the reason; a
command of a type the participant does not take is answered `unknown_command`, one its
model refuses `invalid_command`. Otherwise the handler runs under the rules of
docs/participants.md, and its answer is published (with the broker's confirm) before
the delivery is acked. An outage (Redis or RabbitMQ away, the errors in
`saga.handling.INFRASTRUCTURE_ERRORS`) is not an answer: it is left to the transport,
which keeps the command in hand and runs this again once the server is back.
"""

import asyncio
import contextlib
import time
from typing import Any, Final

import structlog
from pydantic import ValidationError

from contracts.envelope import Envelope, first_error, reply_to, trace_id_of
from contracts.idempotency import IdempotencyKey, parse_idempotency_key
from saga import tracing
from saga.clock import Clock, utc_now
from saga.connections import AnyRedis
from saga.handling import INFRASTRUCTURE_ERRORS
from saga.metrics import command_duration, commands_handled
from saga.participant.context import Context, Recording
from saga.participant.declaration import Participant, Registration
from saga.participant.outcomes import (
    INVALID_COMMAND,
    PARTICIPANT_ERROR,
    UNKNOWN_COMMAND,
    Answer,
    Refused,
    answer_to_error,
    answer_to_record,
    answer_to_result,
    failed,
    record_of,
)
from saga.participant.records import GO, Records, Unit, new_token, unit_of, wait_a_little
from saga.registry import remember_participant
from saga.settings import DEFAULT_RETENTION
from saga.transport import ACK, DeadLetter, Delivery, Outcome, Transport

log = structlog.get_logger(__name__)

# The metrics' label for a command type the participant does not take (any sender may
# make up types: they must not make up time series).
UNKNOWN_TYPE: Final = "(unknown)"
# At most this many answers kept in memory for a store that failed (see _unrecorded).
MAX_UNRECORDED: Final = 10_000


class ParticipantRuntime:
    """Runs one Participant on a transport, with its records in Redis."""

    def __init__(
        self,
        participant: Participant,
        transport: Transport,
        redis: AnyRedis,
        *,
        namespace: str,
        retention: float = DEFAULT_RETENTION,
        clock: Clock = utc_now,
    ) -> None:
        self.participant = participant
        self._transport = transport
        self._redis = redis
        self._namespace = namespace
        self._prefix = participant.key(namespace)
        self._clock = clock
        self._records = Records(redis, ttl=max(1, int(retention)), lease=participant.lease)
        # Answers a handler gave whose storing failed with an outage, by the handled key
        # (with the handling's lease token, and whether a late refusal may replace it):
        # when the transport runs the command again, the answer is stored, not the
        # handler run a second time.
        self._unrecorded: dict[str, tuple[str, Answer, bool]] = {}

    async def run(self) -> None:
        """Declare the participant's queue and start consuming it."""
        name = self.participant.name
        try:
            await remember_participant(self._redis, self._namespace, name)
        except INFRASTRUCTURE_ERRORS as exc:  # Redis away: the commands wait for it anyway
            log.warning("participant not recorded in its namespace", error=repr(exc))
        await self._transport.declare_participants([name])
        await self._transport.consume(self._transport.topology.participant_queue(name), self.handle)

    async def handle(self, delivery: Delivery) -> Outcome:
        """Handle one delivered command: reply, then ack (or dead-letter it)."""
        started = time.perf_counter()
        try:
            envelope = Envelope.from_bytes(delivery.body)
        except ValidationError as exc:
            return DeadLetter(f"unparseable command: {first_error(exc)}")
        key = parse_idempotency_key(envelope.idempotency_key)
        fields: dict[str, Any] = {
            "participant": self.participant.name,
            "saga_id": envelope.saga_id,
            "message_id": envelope.message_id,
            "command": envelope.type,
            "idempotency_key": envelope.idempotency_key,
            "step": None if key is None else key.step,
            "action": None if key is None else key.action,
            "replay": None if key is None else key.replay,
            "trace_id": trace_id_of(envelope.traceparent),
        }
        # (Not bound as context variables: setting them cost a third of a command's CPU;
        # a handler logs with ctx.log.)
        registration = self.participant.registration(envelope.type)
        answer = await self._answer(envelope, key, delivery, registration, fields)
        await self._transport.publish_reply(
            reply_to(envelope, answer.type, answer.payload, at=self._clock())
        )
        command = envelope.type if registration is not None else UNKNOWN_TYPE
        tracing.annotate_current(
            {
                "saga.participant": self.participant.name,
                "saga.step": fields["step"],
                "saga.action": fields["action"],
                "saga.outcome": answer.type,
                "saga.reason": answer.reason,
            }
        )
        commands_handled(self.participant.name, command, answer.type).inc()
        command_duration(self.participant.name, command).observe(time.perf_counter() - started)
        log.info("command handled", **fields, outcome=answer.type, reason=answer.reason)
        return ACK

    async def _answer(
        self,
        envelope: Envelope,
        key: IdempotencyKey | None,
        delivery: Delivery,
        registration: Registration | None,
        fields: dict[str, Any],
    ) -> Answer:
        if registration is None:
            return failed(UNKNOWN_COMMAND, f"{self.participant.name} does not take {envelope.type}")
        try:
            command = registration.command.model_validate(envelope.payload)
        except ValidationError as exc:
            return failed(INVALID_COMMAND, str(exc))
        unit = unit_of(self._prefix, envelope, key, registration)
        pending = self._unrecorded.get(unit.handled)
        if pending is not None:
            # Answered before, and the answer not yet stored: store it now.
            token, answer, late = pending
            return await self._store(unit, token, registration, answer, late=late)
        recording = Recording(self._records, unit, new_token(), registration)
        ctx = self._context(envelope, key, delivery, registration, recording, fields)
        if registration.atomic:
            return await self._run_atomic(command, ctx, recording)
        return await self._run_leased(command, ctx, recording)

    async def _run_atomic(self, command: object, ctx: Context, recording: Recording) -> Answer:
        """No lease: the handler's effect script checks and records in one go."""
        registration, unit = recording.registration, recording.unit
        answer = await self._call(command, ctx, recording)
        if recording.answer is not None:
            return recording.answer
        if answer.definite:
            # It answered without running its script: it did nothing, so a compensation
            # that came first still refuses it.
            return await self._store(unit, recording.token, registration, answer, late=True)
        return await self._stored_or(unit, registration, answer)

    async def _run_leased(self, command: object, ctx: Context, recording: Recording) -> Answer:
        """Check the record and take the step's lease; run the handler holding it
        (renewed meanwhile); store a definite answer and let the lease go."""
        registration, unit, token = recording.registration, recording.unit, recording.token
        attempt = 0
        while (begun := await self._records.begin(unit, token, registration)) != GO:
            if begun.startswith("{"):
                return answer_to_record(begun, registration.reply)
            await wait_a_little(attempt)  # another handling holds the step: wait for it
            attempt += 1
        renewing = asyncio.create_task(self._keep_lease(unit, token))
        try:
            answer = await self._call(command, ctx, recording)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._records.release(unit, token)
            raise
        finally:
            renewing.cancel()
        if recording.answer is not None:
            await self._records.release(unit, token)
            return recording.answer
        if answer.definite:
            return await self._store(unit, token, registration, answer, late=False)
        await self._records.release(unit, token)
        return await self._stored_or(unit, registration, answer)

    async def _call(self, command: object, ctx: Context, recording: Recording) -> Answer:
        """The handler's answer: its reply, or what its exception stands for. An outage
        is raised on (the transport waits it out)."""
        registration = recording.registration
        try:
            with tracing.handling(
                f"handle {type(command).__name__}",
                {"saga.id": ctx.saga_id, "saga.step": ctx.step, "saga.action": ctx.action},
            ):
                result = await registration.handler(command, ctx)
        except INFRASTRUCTURE_ERRORS:
            raise
        except Exception as exc:
            answer = answer_to_error(exc)
            if recording.answer is not None:
                # Its script stored the reply: that stands, and is sent. A Refused is how
                # ctx.atomically gives a stored refusal (that reply itself); else a bug, said.
                if not isinstance(exc, Refused):
                    ctx.log.exception("handler failed after its reply was stored", error=repr(exc))
                return recording.answer
            if answer.reason == PARTICIPANT_ERROR:
                ctx.log.exception("participant failed on a command", error=answer.payload["detail"])
            return answer
        if recording.answer is not None:
            return recording.answer  # its script stored the reply: that is the answer
        return answer_to_result(result, registration.reply, none_allowed=registration.none_allowed)

    async def _store(
        self, unit: Unit, token: str, registration: Registration, answer: Answer, *, late: bool
    ) -> Answer:
        """Store a definite answer (or find the one stored before): the reply to send."""
        try:
            raw = await self._records.finish(
                unit, token, registration, record_of(answer), late=late
            )
        except INFRASTRUCTURE_ERRORS:
            if len(self._unrecorded) < MAX_UNRECORDED:
                self._unrecorded[unit.handled] = (token, answer, late)
            raise
        self._unrecorded.pop(unit.handled, None)
        return answer_to_record(raw, registration.reply)

    async def _stored_or(self, unit: Unit, registration: Registration, answer: Answer) -> Answer:
        """A reply stored for the key meanwhile (a script that stored one, then failed;
        a duplicate handled elsewhere) stands; else this try's answer."""
        raw = await self._records.stored(unit)
        return answer if raw is None else answer_to_record(raw, registration.reply)

    async def _keep_lease(self, unit: Unit, token: str) -> None:
        """Renew the lease every third of its length while the handler runs."""
        every = self.participant.lease / 3
        while True:
            await asyncio.sleep(every)
            try:
                if not await self._records.renew(unit, token):
                    log.warning("lease lost: another handling may run this step", lease=unit.lease)
                    return
            except INFRASTRUCTURE_ERRORS as exc:
                log.warning("lease not renewed", error=repr(exc))

    def _context(
        self,
        envelope: Envelope,
        key: IdempotencyKey | None,
        delivery: Delivery,
        registration: Registration,
        recording: Recording,
        fields: dict[str, Any],
    ) -> Context:
        return Context(
            participant=self.participant.name,
            namespace=self._namespace,
            saga_id=envelope.saga_id,
            message_id=envelope.message_id,
            idempotency_key=envelope.idempotency_key or envelope.message_id,
            step=None if key is None else key.step,
            action=registration.action,
            replay=0 if key is None else key.replay,
            delivery_count=delivery.delivery_count,
            redelivered=delivery.redelivered,
            traceparent=envelope.traceparent,
            trace_id=fields["trace_id"],
            now=self._clock(),
            redis=self._redis,
            _fields=fields,
            _recording=recording,
            _prefix=self._prefix,
        )
