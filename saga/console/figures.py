"""The console's overview in figures: sagas per minute over the last hour by how they
ended, durations, running and failed counts, the steps that fail most.

Pure: the sagas' outcomes and `now` come in, figures and the geometry of a stacked bar
chart come out (`console/_overview_chart.html` draws it).

The hour is the 60 minutes ending with the current one (from the start of the minute 59
minutes before `now`'s, to `now`); a saga counts in it if it ended in it (a saga that
started before and ended within counts). Percentiles are nearest-rank: the p-th
percentile of n durations in order is the one at rank ceil(p/100 * n) (of 1 duration,
that one; of 2, the first is p50 and the second p99; of 100, the 50th and the 99th).
"""

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from saga.console.timeline_chart import duration_words

Ending = Literal["completed", "compensated", "failed"]
ENDINGS: Final[tuple[Ending, ...]] = ("completed", "compensated", "failed")
LegendKind = Literal["completed", "compensated", "failed", "started"]
MINUTES: Final = 60
TOP_STEPS: Final = 5

# The chart's geometry, in the SVG's own units (the page scales it to its width).
WIDTH: Final = 720.0
HEIGHT: Final = 220.0
PLOT_LEFT: Final = 40.0  # the counts' labels are left of it
PLOT_RIGHT: Final = WIDTH - 10.0
PLOT_TOP: Final = 10.0
PLOT_BOTTOM: Final = HEIGHT - 50.0  # below: the minutes' labels, then the legend
BAR_SHARE: Final = 0.8  # of a minute's slot, the rest is space between bars
LABEL_EVERY: Final = 10  # minutes between labels on the time axis


@dataclass(frozen=True)
class SagaOutcome:
    """What the overview reads of one saga: its status word, when it started and ended
    (None while it runs), and the step whose failure ended it, if one did."""

    saga_id: str
    saga_type: str
    status: str
    started: datetime
    ended: datetime | None
    failed_step: str | None


@dataclass(frozen=True)
class Segment:
    """One outcome's part of a minute's bar."""

    outcome: Ending
    count: int
    y: float
    height: float


@dataclass(frozen=True)
class Minute:
    """One minute of the hour: the sagas that ended in it by outcome, those started in
    it, and its bar (its segments stacked from the bottom in ENDINGS' order)."""

    start: datetime
    completed: int
    compensated: int
    failed: int
    started: int
    x: float
    width: float
    segments: tuple[Segment, ...]
    started_y: float  # where the started count's mark is drawn
    title: str

    @property
    def ended(self) -> int:
        """The sagas that ended in the minute, however."""
        return self.completed + self.compensated + self.failed


@dataclass(frozen=True)
class Tick:
    """A label on an axis, at x (time) or y (count)."""

    at: float
    label: str


@dataclass(frozen=True)
class LegendEntry:
    """A key of the chart: what it stands for (for an ending, the status word of the
    sagas list's filter), its words, where it is."""

    kind: LegendKind
    label: str
    x: float
    y: float

    @property
    def css_class(self) -> str:
        """The swatch's classes (console-charts.css)."""
        return f"legend-swatch outcome-{self.kind}"


_KEYS: Final[tuple[tuple[LegendKind, str], ...]] = (
    ("completed", "completed"),
    ("compensated", "compensated"),
    ("failed", "failed (needs a human)"),
    ("started", "started"),
)
# Each key as far right of the last as its words need.
LEGEND: Final = tuple(
    LegendEntry(kind, label, PLOT_LEFT + sum(30 + 6.5 * len(k[1]) for k in _KEYS[:i]), HEIGHT - 14)
    for i, (kind, label) in enumerate(_KEYS)
)


@dataclass(frozen=True)
class StepFailures:
    """A step and how many sagas ended in the hour because it failed."""

    step: str
    count: int


@dataclass(frozen=True)
class OverviewFigures:
    """The overview's figures over the hour from `since` to `now`, and its chart."""

    now: datetime
    since: datetime
    minutes: tuple[Minute, ...]
    ended: int
    completed: int
    compensated: int
    failed: int
    started: int
    running: int
    p50: timedelta | None
    p99: timedelta | None
    failing_steps: tuple[StepFailures, ...]
    width: float
    height: float
    plot_left: float
    plot_right: float
    plot_top: float
    plot_bottom: float
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    legend: tuple["LegendEntry", ...]

    @property
    def p50_text(self) -> str:
        """The median duration in words (`-` with no saga ended in the hour)."""
        return duration_words(self.p50) if self.p50 is not None else "-"

    @property
    def p99_text(self) -> str:
        """The 99th percentile duration in words (`-` with no saga ended in the hour)."""
        return duration_words(self.p99) if self.p99 is not None else "-"


def percentile(ordered: Sequence[timedelta], p: float) -> timedelta | None:
    """The nearest-rank p-th percentile of durations in ascending order (None of none)."""
    if not ordered:
        return None
    return ordered[max(math.ceil(p / 100 * len(ordered)), 1) - 1]


def overview_figures(sagas: Sequence[SagaOutcome], now: datetime) -> OverviewFigures:
    """The figures of the last hour before `now` (see the module's doc for the hour)."""
    since = now.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES - 1)
    ended = [
        s for s in sagas if s.ended is not None and since <= s.ended <= now and s.status in ENDINGS
    ]
    started = [s for s in sagas if since <= s.started <= now]
    counts: Counter[tuple[int, str]] = Counter()
    for saga in ended:
        assert saga.ended is not None
        counts[_minute(since, saga.ended), saga.status] += 1
    for saga in started:
        counts[_minute(since, saga.started), "started"] += 1
    tallest = max(
        [1, *(sum(counts[m, e] for e in ENDINGS) for m in range(MINUTES))]
        + [counts[m, "started"] for m in range(MINUTES)]
    )
    top = _round_up(tallest)
    # A saga's clock may say it ended before it started (processes' clocks differ): 0.
    durations = sorted(max(s.ended - s.started, timedelta(0)) for s in ended if s.ended)
    failing = Counter(s.failed_step for s in ended if s.failed_step is not None)
    by_outcome = Counter(s.status for s in ended)
    return OverviewFigures(
        now=now,
        since=since,
        minutes=tuple(_bar(since, m, counts, top) for m in range(MINUTES)),
        ended=len(ended),
        completed=by_outcome["completed"],
        compensated=by_outcome["compensated"],
        failed=by_outcome["failed"],
        started=len(started),
        running=sum(1 for s in sagas if s.ended is None),
        p50=percentile(durations, 50),
        p99=percentile(durations, 99),
        failing_steps=tuple(
            StepFailures(step, n)
            for step, n in sorted(failing.items(), key=lambda f: (-f[1], f[0]))[:TOP_STEPS]
        ),
        width=WIDTH,
        height=HEIGHT,
        plot_left=PLOT_LEFT,
        plot_right=PLOT_RIGHT,
        plot_top=PLOT_TOP,
        plot_bottom=PLOT_BOTTOM,
        x_ticks=tuple(
            Tick(_slot_x(m), (since + timedelta(minutes=m)).strftime("%H:%M"))
            for m in range(0, MINUTES, LABEL_EVERY)
        ),
        y_ticks=tuple(Tick(_count_y(n, top), str(n)) for n in (0, top // 2, top)),
        legend=LEGEND,
    )


def _minute(since: datetime, at: datetime) -> int:
    """The index of the minute of the hour that `at` falls in."""
    return min(int((at - since) / timedelta(minutes=1)), MINUTES - 1)


def _round_up(count: int) -> int:
    """The count at the top of the chart: an even number of at least `count`, so that
    half of it is a whole number too."""
    return count + count % 2


def _slot_x(minute: int) -> float:
    return round(PLOT_LEFT + minute * (PLOT_RIGHT - PLOT_LEFT) / MINUTES, 2)


def _count_y(count: int, top: int) -> float:
    return round(PLOT_BOTTOM - count / top * (PLOT_BOTTOM - PLOT_TOP), 2)


def _bar(since: datetime, minute: int, counts: Counter[tuple[int, str]], top: int) -> Minute:
    start = since + timedelta(minutes=minute)
    segments: list[Segment] = []
    stacked = 0
    for ending in ENDINGS:
        count = counts[minute, ending]
        if count:
            y = _count_y(stacked + count, top)
            segments.append(Segment(ending, count, y, round(_count_y(stacked, top) - y, 2)))
            stacked += count
    said = ", ".join(f"{counts[minute, e]} {e}" for e in ENDINGS)
    return Minute(
        start=start,
        completed=counts[minute, "completed"],
        compensated=counts[minute, "compensated"],
        failed=counts[minute, "failed"],
        started=counts[minute, "started"],
        x=round(_slot_x(minute) + (1 - BAR_SHARE) / 2 * (PLOT_RIGHT - PLOT_LEFT) / MINUTES, 2),
        width=round(BAR_SHARE * (PLOT_RIGHT - PLOT_LEFT) / MINUTES, 2),
        segments=tuple(segments),
        started_y=_count_y(counts[minute, "started"], top),
        title=f"{start:%H:%M}: {said}; {counts[minute, 'started']} started",
    )
