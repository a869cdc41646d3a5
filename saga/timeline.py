"""A saga's timeline, read from its event log: each execution and compensation, by time."""

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from saga.core.events import (
    Action,
    AttemptFailed,
    CompensationFailed,
    EventRecord,
    RetryScheduled,
    SagaReplayed,
    SagaStarted,
    StepCompensated,
    StepFailed,
    StepRequested,
    StepSkipped,
    StepSucceeded,
    StepTimedOut,
)

RowStatus = Literal["not run", "skipped", "running", "waiting", "succeeded", "failed"]


@dataclass
class TimelineRow:
    """One execution of a step, or one round of its compensation (a replay starts a new
    round): when it started and ended, how many attempts it took, how it ended."""

    step: str
    action: Action
    replay: int = 0  # the replays before it: 0 for the saga's first run
    start: datetime | None = None
    end: datetime | None = None
    attempts: int = 0
    status: RowStatus = "not run"
    reason: str | None = None  # why it failed, or why it waits to retry
    effect_unknown: bool = False
    # For an execution: how its compensation ended (the last round's status), if any.
    undo: RowStatus | None = None

    @property
    def outcome(self) -> str:
        """The row's end in words, e.g. `succeeded, undone` or `failed: timeout; effect
        unknown, so undone`."""
        if self.status == "waiting":
            return f"waiting to retry: {self.reason}"
        if self.status == "failed":
            said = f"failed: {self.reason}"
            if self.effect_unknown:
                said += "; effect unknown" + _UNKNOWN_UNDO.get(self.undo, "")
            return said
        if self.status == "succeeded" and self.action == "execute" and self.undo in _UNDO:
            return f"succeeded, {_UNDO[self.undo]}"
        if self.status == "succeeded" and self.action == "compensate":
            return "compensated"
        return self.status

    @property
    def action_shown(self) -> str:
        """The action, and the replay whose round it is: `compensate (replay 1)`."""
        return f"{self.action} (replay {self.replay})" if self.replay else self.action


_UNDO: dict[RowStatus | None, str] = {
    "succeeded": "undone",
    "failed": "undo failed",
    "running": "being undone",
    "waiting": "being undone",
}
_UNKNOWN_UNDO: dict[RowStatus | None, str] = {
    "succeeded": ", so undone",
    "failed": ", undo failed",
    "running": ", so being undone",
    "waiting": ", so being undone",
}


def timeline(records: list[EventRecord]) -> list[TimelineRow]:
    """The saga's rows ordered by start time; the steps that never started after, in the
    definition's order."""
    rows: list[TimelineRow] = []
    latest: dict[tuple[str, Action], TimelineRow] = {}
    replays = 0

    def row(step: str, action: Action) -> TimelineRow:
        # An event about a command never requested (a step failed by a cancel before
        # its first attempt) still gets its row.
        found = latest.get((step, action))
        if found is None:
            found = latest[step, action] = TimelineRow(step, action, replays)
            rows.append(found)
        return found

    for record in records:
        event, at = record.event, record.at
        match event:
            case SagaStarted(steps=steps):
                for name in steps:
                    row(name, "execute")
            case SagaReplayed():
                replays += 1
            case StepRequested(step=step, action=action):
                current = row(step, action)
                if current.attempts and (
                    current.replay != replays or current.status in ("succeeded", "failed")
                ):
                    current = latest[step, action] = TimelineRow(step, action, replays)
                    rows.append(current)
                current.replay = replays
                current.start = current.start or at
                current.attempts += 1
                current.status, current.reason, current.end = "running", None, None
            case StepSkipped(step=step):
                row(step, "execute").status = "skipped"
            case StepSucceeded(step=step) | StepCompensated(step=step):
                current = row(step, "execute" if isinstance(event, StepSucceeded) else "compensate")
                current.status, current.reason, current.end = "succeeded", None, at
            case StepFailed(step=step, reason=reason, effect_unknown=unknown):
                current = row(step, "execute")
                current.status, current.reason, current.end = "failed", reason, at
                current.effect_unknown = current.effect_unknown or unknown
            case CompensationFailed(step=step, reason=reason):
                current = row(step, "compensate")
                current.status, current.reason, current.end = "failed", reason, at
            case StepTimedOut(step=step, action=action):
                # As in the fold: one try that may have worked makes the step's effect
                # unknown, whatever the later tries answered.
                row(step, action).effect_unknown |= action == "execute"
            case AttemptFailed(step=step, action=action, effect_unknown=unknown):
                row(step, action).effect_unknown |= unknown and action == "execute"
            case RetryScheduled(step=step, action=action, why=why):
                current = row(step, action)
                current.status, current.reason = "waiting", why
    _mark_undone(rows)
    # A stable sort: steps that start together (a parallel group) keep their order.
    started = sorted(
        ((r.start, i, r) for i, r in enumerate(rows) if r.start is not None),
        key=lambda s: (s[0], s[1]),
    )
    return [r for _, _, r in started] + [r for r in rows if r.start is None]


def _mark_undone(rows: list[TimelineRow]) -> None:
    """Give each execution the status of the compensation that followed it (its last
    round, before any later execution of the step)."""
    execution: dict[str, TimelineRow] = {}
    for current in rows:
        if current.action == "execute":
            execution[current.step] = current
        elif current.step in execution:
            execution[current.step].undo = current.status
