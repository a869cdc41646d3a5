"""A saga's timeline as a chart: a bar per attempt of each step and of its compensation,
the back-off waits between them, laid out in time, one row per step.

Pure: the event history and `now` (the end of a bar still awaiting its reply) come in,
geometry for an SVG comes out (`console/_timeline.html` draws it).
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal

from saga.core.events import (
    Action,
    AttemptFailed,
    CancelRequested,
    CompensationFailed,
    EventRecord,
    RetryScheduled,
    SagaReplayed,
    StepCompensated,
    StepFailed,
    StepRequested,
    StepSkipped,
    StepSucceeded,
    StepTimedOut,
)
from saga.timeline import timeline

Outcome = Literal["succeeded", "failed", "timed_out", "compensated", "skipped", "pending"]

# The chart's geometry, in the SVG's own units (the page scales it to its width).
WIDTH: Final = 800.0
PLOT_LEFT: Final = 160.0  # the row labels are left of it
MIN_WIDTH: Final = 2.0  # an attempt that took no time, or a skipped step's marker
# The latest time's x: a bar of MIN_WIDTH there still ends inside the chart.
PLOT_RIGHT: Final = WIDTH - 10.0 - MIN_WIDTH
TOP: Final = 6.0
ROW_HEIGHT: Final = 26.0
BAR_HEIGHT: Final = 16.0
GAP_HEIGHT: Final = 4.0
AXIS_HEIGHT: Final = 24.0
MAX_LABEL: Final = 24  # characters of a row's label
# The most text of a reply or a reason a bar's title shows.
MAX_DETAIL: Final = 300
# Tick spacings to choose from: the smallest that gives at most MAX_TICKS ticks.
MAX_TICKS: Final = 6
_SPACINGS: Final = tuple(
    timedelta(milliseconds=ms)
    for ms in (
        *(1, 2, 5, 10, 20, 50, 100, 200, 500),
        *(1000 * s for s in (1, 2, 5, 10, 15, 30)),
        *(60_000 * m for m in (1, 2, 5, 10, 15, 30)),
        *(3_600_000 * h for h in (1, 2, 3, 6, 12, 24, 48, 168)),
    )
)


@dataclass(frozen=True)
class Tick:
    """A mark on the time axis: its x and the time since the saga started."""

    x: float
    label: str


@dataclass(frozen=True)
class Row:
    """One step's row: its label, its top and height, and how its step stands in words."""

    step: str
    label: str
    y: float
    height: float
    status: str


@dataclass(frozen=True)
class Bar:
    """One attempt of a step's execution or compensation, from command to reply (to `now`
    while it is awaited; to its timeout if none came); a skipped step's marker has
    attempt 0. `replay`: the replays before its round (0: the saga's first run)."""

    step: str
    action: Action
    outcome: Outcome
    attempt: int
    replay: int
    start: datetime
    end: datetime
    x: float
    y: float
    width: float
    height: float
    title: str

    @property
    def css_class(self) -> str:
        """The classes the bar is drawn with (console-charts.css)."""
        return f"bar outcome-{self.outcome} action-{self.action}"


@dataclass(frozen=True)
class Gap:
    """The back-off wait between a failed attempt and its retry (number `attempt`); a
    retry not sent yet waits until it is due."""

    step: str
    action: Action
    attempt: int
    start: datetime
    end: datetime
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Marker:
    """A moment an operator acted (a replay, a cancel): a line across the rows."""

    kind: Literal["replay", "cancel"]
    at: datetime
    x: float
    label: str


@dataclass(frozen=True)
class TimelineChart:
    """Everything the timeline's SVG draws; `start`/`end` are the times at the plot's
    left and right edges."""

    width: float
    height: float
    start: datetime
    end: datetime
    plot_left: float
    plot_right: float
    axis_y: float
    ticks: tuple[Tick, ...]
    rows: tuple[Row, ...]
    bars: tuple[Bar, ...]
    gaps: tuple[Gap, ...]
    markers: tuple[Marker, ...]


@dataclass
class _Attempt:
    step: str
    action: Action
    attempt: int
    replay: int
    start: datetime
    end: datetime | None = None
    outcome: Outcome = "pending"
    detail: str = ""


@dataclass
class _Wait:
    step: str
    action: Action
    attempt: int
    start: datetime
    end: datetime
    why: str
    closed: bool = False


@dataclass
class _Fold:
    """The attempts and waits read from the log so far."""

    attempts: list[_Attempt] = field(default_factory=list)
    waits: list[_Wait] = field(default_factory=list)
    marks: list[tuple[Literal["replay", "cancel"], datetime, str]] = field(default_factory=list)
    replays: int = 0

    def last(self, step: str, action: Action) -> _Attempt | None:
        """The attempt awaiting its reply, else the latest one (a late reply is its)."""
        mine = [a for a in self.sent() if (a.step, a.action) == (step, action)]
        return next((a for a in reversed(mine) if a.end is None), mine[-1] if mine else None)

    def latest(self, step: str) -> _Attempt | None:
        """The step's latest attempt, of either action (or its skipped marker)."""
        return next((a for a in reversed(self.attempts) if a.step == step), None)

    def sent(self) -> list[_Attempt]:
        """The attempts, without the skipped steps' markers (no reply is theirs)."""
        return [a for a in self.attempts if a.outcome != "skipped"]

    def waiting(self, step: str, action: Action) -> _Wait | None:
        return next(
            (w for w in self.waits if (w.step, w.action) == (step, action) and not w.closed),
            None,
        )

    def close_wait(self, step: str, action: Action, at: datetime) -> None:
        wait = self.waiting(step, action)
        if wait is not None:
            wait.end, wait.closed = max(at, wait.start), True

    def answer(
        self, step: str, action: Action, at: datetime, outcome: Outcome, detail: str
    ) -> None:
        """The step's (or compensation's) end: the attempt awaited ends so; a late reply
        ends the last one, whose retry (if scheduled) is never sent; a failure after the
        last attempt ended (its retries used up, or given up as the saga is undone) ends
        the wait for a retry and is told in the attempt's title."""
        attempt = self.last(step, action)
        if attempt is None:  # failed before any command was sent (a cancel, a build error)
            return
        if attempt.end is None:
            attempt.end, attempt.outcome, attempt.detail = at, outcome, detail
            self.close_wait(step, action, at)
        elif outcome not in ("succeeded", "compensated"):
            attempt.detail += f"; then {outcome.replace('_', ' ')}: {detail}"
            self.close_wait(step, action, at)
        elif attempt is self.latest(step):
            late = (
                f"{attempt.outcome.replace('_', ' ')} at {_clock(attempt.end)}, its reply came late"
            )
            attempt.end, attempt.outcome, attempt.detail = at, outcome, f"{late}: {detail}"
            wait = self.waiting(step, action)
            if wait is not None:
                self.waits.remove(wait)

    def supersede(self, step: str, at: datetime) -> None:
        """Something new of a step while a command of it is still awaited (a log the core
        does not write): the command is drawn up to it, still pending."""
        for earlier in self.attempts:
            if earlier.step == step and earlier.end is None:
                earlier.end, earlier.detail = at, "no reply recorded before what came next"

    def read(self, record: EventRecord) -> None:
        event, at = record.event, record.at
        match event:
            case SagaReplayed(by=by):
                self.replays += 1
                self.marks.append(("replay", at, f"replayed by {by}"))
            case CancelRequested(by=by):
                self.marks.append(("cancel", at, f"cancel asked by {by}"))
            case StepRequested(step=step, action=action, attempt=attempt):
                self.close_wait(step, action, at)
                self.supersede(step, at)
                self.attempts.append(_Attempt(step, action, attempt, self.replays, at))
            case StepSkipped(step=step):
                self.supersede(step, at)
                skipped = _Attempt(step, "execute", 0, self.replays, at, at, "skipped")
                skipped.detail = "its condition did not hold"
                self.attempts.append(skipped)
            case StepSucceeded(step=step, result=result):
                self.answer(step, "execute", at, "succeeded", _data(result))
            case StepCompensated(step=step, result=result):
                self.answer(step, "compensate", at, "compensated", _data(result))
            case StepFailed(step=step, reason=reason):
                self.answer(step, "execute", at, "failed", reason)
            case CompensationFailed(step=step, reason=reason):
                self.answer(step, "compensate", at, "failed", reason)
            case AttemptFailed(step=step, action=action, reason=reason):
                self.answer(step, action, at, "failed", f"{reason} (for now)")
            case StepTimedOut(step=step, action=action):
                self.answer(step, action, at, "timed_out", "no reply in time")
            case RetryScheduled(step=step, action=action, attempt=attempt, due_at=due, why=why):
                self.waits.append(_Wait(step, action, attempt, at, max(due, at), why))


def timeline_chart(events: Sequence[EventRecord], now: datetime) -> TimelineChart:
    """The chart of a saga's history; a bar still awaiting its reply ends at `now`."""
    fold = _Fold()
    for record in events:
        fold.read(record)
    for attempt in fold.attempts:
        if attempt.end is None:
            attempt.end = max(now, attempt.start)
    ends = [a.end for a in fold.attempts if a.end] + [w.end for w in fold.waits]
    first = events[0].at if events else now
    last = max([first, *ends, *(r.at for r in events), *(at for _, at, _ in fold.marks)])
    scale = _Scale(first, last)
    rows = _rows(events)
    top = {row.step: row.y for row in rows}
    bars = _bars(fold.attempts, scale, top)
    gaps = tuple(_gap(w, scale, top[w.step]) for w in fold.waits)
    axis_y = TOP + len(rows) * ROW_HEIGHT
    return TimelineChart(
        width=WIDTH,
        height=axis_y + AXIS_HEIGHT,
        start=first,
        end=last,
        plot_left=PLOT_LEFT,
        plot_right=PLOT_RIGHT,
        axis_y=axis_y,
        ticks=scale.ticks(),
        rows=rows,
        bars=bars,
        gaps=gaps,
        markers=tuple(Marker(k, at, scale.x(at), label) for k, at, label in fold.marks),
    )


def _rows(events: Sequence[EventRecord]) -> tuple[Row, ...]:
    """A row per step, in the order `saga show` lists them (by first start; the steps
    never started last, in the definition's order)."""
    shown = timeline(list(events))
    steps = list(dict.fromkeys(r.step for r in shown))
    status = {r.step: r.outcome for r in shown if r.action == "execute"}
    return tuple(
        Row(step, _cut(step), TOP + i * ROW_HEIGHT, ROW_HEIGHT, status.get(step, "not run"))
        for i, step in enumerate(steps)
    )


class _Scale:
    """Times to x in the plot: the saga's first event at its left edge, its last at the
    right (a chart of no time at all spans a millisecond)."""

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start = start
        self.span = max(end - start, timedelta(milliseconds=1))

    def x(self, at: datetime) -> float:
        share = (at - self.start) / self.span
        return round(PLOT_LEFT + min(max(share, 0.0), 1.0) * (PLOT_RIGHT - PLOT_LEFT), 2)

    def extent(self, start: datetime, end: datetime) -> tuple[float, float]:
        """x and width of a span: never negative, at least MIN_WIDTH."""
        left, right = self.x(start), self.x(max(start, end))
        return left, round(max(right - left, MIN_WIDTH), 2)

    def ticks(self) -> tuple[Tick, ...]:
        spacing = next((s for s in _SPACINGS if self.span / s <= MAX_TICKS), _SPACINGS[-1])
        count = int(self.span / spacing)
        return tuple(
            Tick(self.x(self.start + n * spacing), duration_words(n * spacing))
            for n in range(count + 1)
        )


def _bars(attempts: list[_Attempt], scale: _Scale, top: dict[str, float]) -> tuple[Bar, ...]:
    """The attempts' bars by start time. A bar of too little time to see is widened to
    MIN_WIDTH, and the bar after it in its row starts where it ends: bars of one row
    never overlap (and never pass the chart's edge)."""
    bars: list[Bar] = []
    right: dict[str, float] = {}
    for attempt in sorted(attempts, key=lambda a: a.start):
        x, width = scale.extent(attempt.start, attempt.end or attempt.start)
        left = min(max(x, right.get(attempt.step, x)), WIDTH - MIN_WIDTH)
        width = round(max(x + width - left, MIN_WIDTH), 2)
        right[attempt.step] = left + width
        bars.append(_bar(attempt, left, width, top[attempt.step]))
    return tuple(bars)


def _bar(attempt: _Attempt, x: float, width: float, row_top: float) -> Bar:
    end = attempt.end or attempt.start
    heading = (
        f"{attempt.step}: skipped at {_clock(attempt.start)}"
        if attempt.outcome == "skipped"
        else f"{attempt.step} {attempt.action}, attempt {attempt.attempt}: "
        f"{attempt.outcome.replace('_', ' ')}\n{_clock(attempt.start)} to {_clock(end)} "
        f"({duration_words(end - attempt.start)})"
    )
    round_ = f"\nround of replay {attempt.replay}" if attempt.replay else ""
    return Bar(
        step=attempt.step,
        action=attempt.action,
        outcome=attempt.outcome,
        attempt=attempt.attempt,
        replay=attempt.replay,
        start=attempt.start,
        end=end,
        x=x,
        y=row_top + (ROW_HEIGHT - BAR_HEIGHT) / 2,
        width=width,
        height=BAR_HEIGHT,
        title=f"{heading}{round_}\n{attempt.detail}".rstrip(),
    )


def _gap(wait: _Wait, scale: _Scale, row_top: float) -> Gap:
    x, width = scale.extent(wait.start, wait.end)
    return Gap(
        step=wait.step,
        action=wait.action,
        attempt=wait.attempt,
        start=wait.start,
        end=wait.end,
        x=x,
        y=row_top + (ROW_HEIGHT - GAP_HEIGHT) / 2,
        width=width,
        height=GAP_HEIGHT,
        title=(
            f"{wait.step} {wait.action}: waiting to retry ({wait.why}), attempt "
            f"{wait.attempt} at {_clock(wait.end)} ({duration_words(wait.end - wait.start)})"
        ),
    )


def duration_words(span: timedelta) -> str:
    """A duration as a person reads it: `250ms`, `14.9s`, `2m 5s`, `3h 20m`."""
    ms = max(round(span / timedelta(milliseconds=1)), 0)
    if ms < 1000:
        return f"{ms}ms" if ms else "0s"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s".replace(".0s", "s")
    seconds = ms // 1000
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60}s".replace(" 0s", "")
    return f"{seconds // 3600}h {seconds % 3600 // 60}m".replace(" 0m", "")


def _clock(at: datetime) -> str:
    """A time as the title shows it: `12:00:01.250 UTC` (the date is the page's)."""
    return at.strftime("%H:%M:%S.%f")[:-3] + (" UTC" if at.utcoffset() == timedelta(0) else "")


def _cut(name: str) -> str:
    """A step's name as its row's label shows it: cut to what fits left of the plot (its
    row's title holds it whole)."""
    return name if len(name) <= MAX_LABEL else name[: MAX_LABEL - 1] + "…"


def _data(result: object) -> str:
    """A reply's data as text, cut to MAX_DETAIL characters."""
    text = json.dumps(result, sort_keys=True, default=str)
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"
