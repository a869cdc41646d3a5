"""The message envelope every command and reply travels in."""

import hashlib
import re
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
# W3C Trace Context: version-trace_id-parent_id-flags.
TRACEPARENT_PATTERN = r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
# The saga ids the conformance check (`saga participant check`) makes up start with this:
# an orchestrator acks a reply to an unknown saga of such an id and ignores it, rather
# than dead-lettering it as noise.
CHECK_SAGA_PREFIX: Final = "conformance-check."
_TRACEPARENT: Final = re.compile(TRACEPARENT_PATTERN)


class Envelope(BaseModel):
    """One message on the wire: ids for deduplication and tracing, a type, a payload.

    `message_id` is unique per message (a redelivery keeps it); `causation_id` is the
    id of the message that caused this one (a reply names its command); `correlation_id`
    ties every message of one saga together. `idempotency_key` names the unit of work
    (saga, step, action) so that a participant does it at most once.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: str = Field(pattern=ID_PATTERN)
    saga_id: str = Field(pattern=ID_PATTERN)
    correlation_id: str = Field(pattern=ID_PATTERN)
    causation_id: str | None = Field(default=None, pattern=ID_PATTERN)
    type: str = Field(min_length=1, max_length=64)
    sent_at: datetime
    payload: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, max_length=256)
    traceparent: str | None = Field(default=None, pattern=TRACEPARENT_PATTERN)

    def to_bytes(self) -> bytes:
        """The envelope as UTF-8 JSON."""
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, body: bytes) -> "Envelope":
        """Parse an envelope; raises pydantic.ValidationError on anything malformed."""
        return cls.model_validate_json(body)


_REPLY_ID_PERSON: Final = b"saga-reply-id"


def reply_id_of(command_id: str) -> str:
    """The id of the reply to a command: 32 hex digits, the same for every repeat, so
    that the orchestrator knows a repeated reply for what it is."""
    digest = hashlib.blake2b(command_id.encode(), digest_size=16, person=_REPLY_ID_PERSON)
    return digest.hexdigest()


def reply_to(
    command: "Envelope", reply_type: str, payload: dict[str, Any], *, at: datetime
) -> "Envelope":
    """The reply to a command: its id from the command's, its causation the command, its
    trace the command's trace."""
    reply_id = reply_id_of(command.message_id)
    trace_id = trace_id_of(command.traceparent)
    return Envelope(
        message_id=reply_id,
        saga_id=command.saga_id,
        correlation_id=command.correlation_id,
        causation_id=command.message_id,
        type=reply_type,
        sent_at=at,
        payload=payload,
        traceparent=traceparent(trace_id, reply_id[:16]) if trace_id else None,
    )


def is_check_saga(saga_id: str) -> bool:
    """Whether a saga id is one the conformance check made up."""
    return saga_id.startswith(CHECK_SAGA_PREFIX)


def first_error(exc: ValidationError) -> str:
    """The first validation error as `field.path: message`, for a dead letter or an error line."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "body"
    return f"{where}: {err.get('msg', 'invalid')}"


def traceparent(trace_id: str, span_id: str) -> str:
    """A W3C traceparent header value for a new span of a trace (sampled)."""
    return f"00-{trace_id}-{span_id}-01"


def trace_id_of(value: str | None) -> str | None:
    """The trace id of a traceparent value, or None if it is absent or malformed."""
    if value is None or not _TRACEPARENT.fullmatch(value):
        return None
    trace_id = value.split("-")[1]
    return None if trace_id == "0" * 32 else trace_id
