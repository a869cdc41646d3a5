"""A saga's messages, read from its event log: each command sent and the reply it got."""

from dataclasses import dataclass
from datetime import datetime

from saga.core.events import (
    Action,
    AttemptFailed,
    CompensationFailed,
    EventRecord,
    ReplyIgnored,
    StepCompensated,
    StepFailed,
    StepRequested,
    StepSucceeded,
    StepTimedOut,
)


@dataclass
class Exchange:
    """One command and what came back: a reply (with its id), a timeout, or nothing yet."""

    step: str
    action: Action
    attempt: int
    command_type: str
    participant: str
    command_id: str
    sent_at: datetime
    reply: str | None = None
    reply_id: str | None = None
    replied_at: datetime | None = None


@dataclass(frozen=True)
class Ignored:
    """A reply the saga recorded but did not apply (late, repeated or unexpected)."""

    reply_id: str
    reply_type: str
    causation_id: str | None
    why: str
    at: datetime


def exchanges(records: list[EventRecord]) -> tuple[list[Exchange], list[Ignored]]:
    """Every command of the saga with its reply, in the order sent; the ignored replies."""
    sent: list[Exchange] = []
    by_id: dict[str, Exchange] = {}
    latest: dict[tuple[str, Action], Exchange] = {}
    ignored: list[Ignored] = []

    def answer(found: Exchange | None, reply: str, reply_id: str | None, at: datetime) -> None:
        if found is not None and found.reply is None:
            found.reply, found.reply_id, found.replied_at = reply, reply_id, at

    for record in records:
        event, at = record.event, record.at
        match event:
            case StepRequested():
                exchange = Exchange(
                    event.step,
                    event.action,
                    event.attempt,
                    event.command_type,
                    event.participant,
                    event.command_id,
                    at,
                )
                sent.append(exchange)
                by_id[event.command_id] = latest[event.step, event.action] = exchange
            case StepTimedOut(command_id=command_id):
                answer(by_id.get(command_id), "no reply: timed out", None, at)
            case AttemptFailed(command_id=command_id, reply_id=reply_id, reason=reason):
                answer(by_id.get(command_id), f"failed, to retry: {reason}", reply_id, at)
            case StepSucceeded(step=step, reply_id=reply_id):
                answer(latest.get((step, "execute")), "succeeded", reply_id, at)
            case StepCompensated(step=step, reply_id=reply_id):
                answer(latest.get((step, "compensate")), "compensated", reply_id, at)
            case StepFailed(step=step, reply_id=reply_id, reason=reason):
                answer(latest.get((step, "execute")), f"failed: {reason}", reply_id, at)
            case CompensationFailed(step=step, reply_id=reply_id, reason=reason):
                answer(latest.get((step, "compensate")), f"failed: {reason}", reply_id, at)
            case ReplyIgnored():
                ignored.append(
                    Ignored(event.reply_id, event.reply_type, event.causation_id, event.why, at)
                )
    return sent, ignored
