"""What a handler's outcome means on the wire: the exceptions it raises, and the reply each is."""

from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from contracts.envelope import first_error
from contracts.messages import CommandFailed
from saga.transport import error_text

# Why a command failed when the participant failed on it for a reason of its own.
PARTICIPANT_ERROR: Final = "participant_error"
# Why a command is refused when the compensation of its step came first (by default).
COMPENSATED_FIRST: Final = "compensated_first"
UNKNOWN_COMMAND: Final = "unknown_command"
INVALID_COMMAND: Final = "invalid_command"
# The most of an error's text a reply carries.
MAX_DETAIL: Final = 1000


class Refused(Exception):
    """A business refusal: the command will not be done, now or ever (`CommandFailed`,
    not transient). Stored as the reply for the idempotency key: every repeat gets it.

    `reason` is a stable word of at most 64 characters (`insufficient_stock`); `detail`
    says it for people."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Transient(Exception):
    """Trying again later may work: a dependency is away or busy (`CommandFailed` with
    `transient: true`: the saga retries under its retry policy). Not stored: the retry,
    under the same idempotency key, runs the handler again."""

    def __init__(self, reason: str = "transient", detail: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class EffectUnknown(Exception):
    """The handler cannot tell whether its effect took place: a call that timed out
    (`CommandFailed` with `effect_unknown: true`: if the saga gives the step up, it is
    compensated to be sure). Not stored: asked again under the same key, the handler
    runs again and may find out (pass `ctx.idempotency_key` to whatever it calls)."""

    def __init__(self, reason: str = "effect_unknown", detail: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Answer:
    """A reply to a command, and whether it is the definite answer for its idempotency
    key (stored, and given to every repeat) or only this try's (transient, unknown)."""

    type: str
    payload: dict[str, Any]
    definite: bool

    @property
    def reason(self) -> str | None:
        """A failure's reason word (None for a success)."""
        if self.type != CommandFailed.__name__:
            return None
        return str(self.payload.get("reason"))


def failed(
    reason: str,
    detail: str | None = None,
    *,
    transient: bool = False,
    effect_unknown: bool = False,
    definite: bool = False,
) -> Answer:
    """A CommandFailed answer; a detail past MAX_DETAIL characters is cut."""
    failure = CommandFailed(
        reason=reason,
        detail=None if detail is None else detail[:MAX_DETAIL],
        transient=transient,
        effect_unknown=effect_unknown,
    )
    return Answer(CommandFailed.__name__, failure.model_dump(mode="json"), definite)


def participant_error(detail: str) -> Answer:
    """The participant failed on the command for a reason of its own (a bug, a script
    error, data it cannot read): not transient, since the same command fails the same
    way again, and its effect unknown, since what it did before it failed stays done."""
    return failed(PARTICIPANT_ERROR, detail, effect_unknown=True)


def answer_to_error(exc: BaseException) -> Answer:
    """The answer a handler's exception stands for (an outage is not one: the runtime
    leaves it to the transport before it gets here)."""
    try:
        match exc:
            case Refused():
                return failed(exc.reason, exc.detail, definite=True)
            case Transient():
                return failed(exc.reason, exc.detail, transient=True)
            case EffectUnknown():
                return failed(exc.reason, exc.detail, effect_unknown=True)
    except ValidationError as invalid:
        return participant_error(
            f"{type(exc).__name__} with a reason CommandFailed cannot carry "
            f"({first_error(invalid)}): {error_text(exc)}"
        )
    return participant_error(error_text(exc))


def answer_to_result(result: object, reply: type[BaseModel], *, none_allowed: bool) -> Answer:
    """The answer a handler's return value stands for: its reply, if it is one of the
    declared type (None too, where the reply has no fields to give); anything else is
    the participant's error."""
    if result is None and none_allowed:
        result = reply()
    if not isinstance(result, reply):
        return participant_error(
            f"the handler returned {type(result).__name__}, not {reply.__name__}"
        )
    return Answer(reply.__name__, result.model_dump(mode="json"), definite=True)


def answer_to_record(raw: str, reply: type[BaseModel]) -> Answer:
    """A stored reply (as the record holds it: `{"type": ..., "payload": ...}`), checked
    against its contract; one that breaks it is the participant's error."""
    return read_record(raw, reply)[0]


def read_record(raw: str, reply: type[BaseModel]) -> tuple[Answer, BaseModel | None]:
    """A stored reply as an answer, and as its model (None for a failure): read and
    checked once."""
    try:
        record = _Record.model_validate_json(raw)
        model: BaseModel | None = None
        if record.type == CommandFailed.__name__:
            CommandFailed.model_validate(record.payload)
        elif record.type == reply.__name__:
            model = reply.model_validate(record.payload)
        else:
            error = participant_error(f"the stored reply is {record.type}, not {reply.__name__}")
            return error, None
    except ValidationError as exc:
        error = participant_error(f"the stored reply breaks its contract: {first_error(exc)}")
        return error, None
    return Answer(record.type, record.payload, definite=True), model


def refusal_record(refusal: Refused) -> str:
    """A refusal as the record stores it when no handler made it (a late command's), in
    the shape a script's `refuse` stores: its reason and detail. A reason CommandFailed
    cannot carry is a ValueError."""
    try:
        failure = CommandFailed(reason=refusal.reason, detail=refusal.detail)
    except ValidationError as exc:
        raise ValueError(f"a refusal's {first_error(exc)}") from None
    payload = failure.model_dump(mode="json", include={"reason", "detail"}, exclude_none=True)
    return record_of(Answer(CommandFailed.__name__, payload, definite=True))


def record_of(answer: Answer) -> str:
    """An answer as the record stores it."""
    return _Record(type=answer.type, payload=answer.payload).model_dump_json()


class _Record(BaseModel):
    type: str
    payload: dict[str, Any] = {}
