"""What a handler knows of the command it handles, and what it may use."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel
from structlog.typing import FilteringBoundLogger

from contracts.idempotency import KeyAction
from saga.connections import AnyRedis
from saga.participant.declaration import Registration
from saga.participant.outcomes import Answer, Refused, read_record
from saga.participant.records import BUSY, EffectScript, Records, Unit, wait_a_little

R = TypeVar("R", bound=BaseModel)


@dataclass
class Recording:
    """What the runtime learns from a handler's EffectScript: the reply it stored."""

    records: Records
    unit: Unit
    token: str
    registration: Registration
    answer: Answer | None = None


@dataclass(slots=True, eq=False)
class Context:
    """One command's handling, as its handler sees it.

    `idempotency_key` is the key the command carries (its `message_id` when it carries
    none): pass it on to whatever the handler calls, so that a second try is known
    there too. `step`, `action` and `replay` are what the key names (None, the
    handler's own action and 0 for a key of another shape). `delivery_count` counts the
    broker's earlier deliveries of this message; `traceparent` and `trace_id` are the
    command's W3C trace context. `log` is bound with the saga, message, key and trace;
    `redis` is the participant's Redis client; `now` the time the handling began. (Read
    it, do not change it: it is not frozen only because a frozen one costs a command
    more to make.)
    """

    participant: str
    namespace: str
    saga_id: str
    message_id: str
    idempotency_key: str
    step: str | None
    action: KeyAction
    replay: int
    delivery_count: int
    redelivered: bool
    traceparent: str | None
    trace_id: str | None
    now: datetime
    redis: AnyRedis
    _fields: dict[str, Any] = field(repr=False)
    _recording: Recording = field(repr=False)
    _prefix: str = field(repr=False)  # the participant's own keys': Participant.key(namespace)
    _log: FilteringBoundLogger | None = field(default=None, repr=False)

    @property
    def log(self) -> FilteringBoundLogger:
        """A logger bound with the command's saga, message, command, key and trace (made
        when first asked for: most handlers log nothing)."""
        if self._log is None:
            self._log = structlog.get_logger("saga.participant").bind(**self._fields)
        return self._log

    def key(self, *parts: str) -> str:
        """A Redis key of the participant's own (`<ns>:<name>:{<name>}:<parts>`): the
        keys an EffectScript touches must be these, so they share one hash slot."""
        return ":".join((self._prefix, *parts))

    async def atomically(
        self, script: EffectScript[R], *, keys: Sequence[str] = (), args: Sequence[Any] = ()
    ) -> R:
        """Run the effect script: its effect and the command's reply are written in one
        go. Returns the reply it stored (or the one stored before, for a repeat);
        raises Refused for a refusal it stored. Once per handling."""
        recording = self._recording
        if script.reply is not recording.registration.reply:
            raise TypeError(
                f"the script replies {script.reply.__name__}, but the handler of "
                f"{recording.registration.type} replies {recording.registration.reply.__name__}"
            )
        if recording.answer is not None:
            raise RuntimeError("a handler records its reply once: ctx.atomically ran already")
        attempt = 0
        while True:
            raw = await recording.records.effect(
                script, recording.unit, recording.token, recording.registration, keys, args
            )
            if raw != BUSY:
                break
            await wait_a_little(attempt)
            attempt += 1
        if raw is None:
            raise RuntimeError(
                "the effect script returned no reply: end it in ok(...) or refuse(...)"
            )
        answer, model = read_record(raw, script.reply)
        recording.answer = answer
        if isinstance(model, script.reply):
            return model
        raise Refused(str(answer.payload.get("reason")), answer.payload.get("detail"))
