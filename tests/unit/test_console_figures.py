"""The console's overview figures: sagas per minute of the last hour by how they ended,
nearest-rank p50/p99 durations, running and failed counts, the steps that fail most; and
the stacked bar chart that draws them."""

from datetime import UTC, datetime, timedelta
from typing import Final

from hypothesis import example, given
from hypothesis import strategies as st

from saga.console.figures import OverviewFigures, SagaOutcome, overview_figures, percentile
from tests.unit.console_markup import classes, elements, render, title

NOW: Final = datetime(2026, 3, 1, 12, 30, 20, tzinfo=UTC)
SINCE: Final = datetime(2026, 3, 1, 11, 31, tzinfo=UTC)  # the start of the hour's first minute


def saga(
    n: int,
    status: str,
    started: datetime,
    ended: datetime | None = None,
    failed_step: str | None = None,
) -> SagaOutcome:
    return SagaOutcome(f"saga{n}", "order", status, started, ended, failed_step)


def minute(figures: OverviewFigures, at: datetime) -> tuple[int, int, int, int]:
    (found,) = [m for m in figures.minutes if m.start <= at < m.start + timedelta(minutes=1)]
    return (found.completed, found.compensated, found.failed, found.started)


def test_no_sagas_no_figures() -> None:
    figures = overview_figures([], NOW)
    assert (figures.ended, figures.started, figures.running, figures.failed) == (0, 0, 0, 0)
    assert (figures.p50, figures.p99, figures.p50_text) == (None, None, "-")
    assert figures.failing_steps == ()
    assert len(figures.minutes) == 60 and not any(m.segments for m in figures.minutes)
    assert figures.since == SINCE and figures.minutes[-1].start == NOW.replace(second=0)
    render("console/_overview_chart.html", figures=figures)


def test_each_saga_counts_in_the_minute_it_ended_by_its_outcome() -> None:
    at = NOW - timedelta(minutes=5)
    figures = overview_figures(
        [
            saga(1, "completed", at - timedelta(seconds=3), at),
            saga(2, "compensated", at - timedelta(seconds=2), at, "take_payment"),
            saga(3, "failed", at - timedelta(seconds=1), at + timedelta(seconds=1), "create_order"),
            # Started before the hour, ended within it: counted where it ended.
            saga(4, "completed", NOW - timedelta(hours=3), NOW - timedelta(minutes=50)),
            saga(5, "running", NOW - timedelta(seconds=10)),
            saga(6, "compensating", NOW - timedelta(hours=2)),
            # Ended before the hour: not counted.
            saga(7, "failed", NOW - timedelta(hours=2), NOW - timedelta(minutes=61), "x"),
        ],
        NOW,
    )
    assert minute(figures, at) == (1, 1, 1, 3)
    assert minute(figures, NOW - timedelta(minutes=50)) == (1, 0, 0, 0)
    assert minute(figures, NOW) == (0, 0, 0, 1)
    assert (figures.ended, figures.completed, figures.compensated, figures.failed) == (4, 2, 1, 1)
    assert (figures.running, figures.started) == (2, 4)
    assert [(f.step, f.count) for f in figures.failing_steps] == [
        ("create_order", 1),
        ("take_payment", 1),
    ]
    # Durations 2s, 2s, 3s and 2h10m: the 2nd and the 4th by rank.
    assert (figures.p50, figures.p99) == (timedelta(seconds=2), timedelta(hours=2, minutes=10))


def test_the_hours_edges() -> None:
    figures = overview_figures(
        [
            saga(1, "completed", SINCE - timedelta(minutes=1), SINCE),  # the first moment
            saga(2, "completed", SINCE - timedelta(minutes=1), SINCE - timedelta(microseconds=1)),
            saga(3, "completed", NOW - timedelta(seconds=1), NOW),  # the last moment
            saga(4, "completed", NOW, NOW + timedelta(seconds=1)),  # not ended yet by now
        ],
        NOW,
    )
    assert figures.minutes[0].completed == 1 and figures.minutes[-1].completed == 1
    assert figures.ended == 2


def test_percentiles_are_nearest_rank() -> None:
    def seconds(*values: int) -> list[timedelta]:
        return [timedelta(seconds=v) for v in values]

    assert percentile([], 50) is None
    assert percentile(seconds(7), 50) == percentile(seconds(7), 99) == timedelta(seconds=7)
    assert (percentile(seconds(1, 9), 50), percentile(seconds(1, 9), 99)) == tuple(seconds(1, 9))
    hundred = seconds(*range(1, 101))
    assert (percentile(hundred, 50), percentile(hundred, 99)) == tuple(seconds(50, 99))


def test_the_steps_that_fail_most_are_the_top_five() -> None:
    at = NOW - timedelta(minutes=1)
    failures = [f"step{n}" for n in range(7) for _ in range(n + 1)]
    figures = overview_figures(
        [saga(i, "compensated", at, at, step) for i, step in enumerate(failures)], NOW
    )
    assert [(f.step, f.count) for f in figures.failing_steps] == [
        ("step6", 7),
        ("step5", 6),
        ("step4", 5),
        ("step3", 4),
        ("step2", 3),
    ]


def test_the_chart_stacks_each_minute_by_outcome_with_titles_and_a_legend() -> None:
    at = NOW - timedelta(minutes=2)
    sagas = [saga(n, "completed", at, at) for n in range(3)] + [
        saga(9, "failed", at, at, "<script>x</script>")
    ]
    figures = overview_figures(sagas, NOW)
    svg = render("console/_overview_chart.html", figures=figures, list_url="/console/sagas")
    assert svg.get("viewBox") == f"0 0 {figures.width} {figures.height}"
    (group,) = [g for g in elements(svg, "g") if g.get("data-ended") == "4"]
    completed, failed = elements(group, "rect", data_outcome="completed") + elements(
        group, "rect", data_outcome="failed"
    )
    assert classes(completed) == {"bar", "outcome-completed"} and completed.get("data-count") == "3"
    assert float(failed.get("y", 0)) + float(failed.get("height", 0)) == float(
        completed.get("y", 0)
    )  # stacked: failed on top of completed
    assert float(completed.get("y", 0)) + float(completed.get("height", 0)) == figures.plot_bottom
    assert title(failed) == f"{at:%H:%M}: 3 completed, 0 compensated, 1 failed; 4 started"
    legend = [g.get("data-legend") for g in elements(svg, "g") if g.get("data-legend")]
    assert legend == ["completed", "compensated", "failed", "started"]
    links = [a.get("href") for a in elements(svg, "a")]
    assert links == [f"/console/sagas?status={s}" for s in ("completed", "compensated", "failed")]
    assert not [e for e in svg.iter() if e.get("style") is not None]
    assert not elements(svg, "script")


outcomes = st.builds(
    SagaOutcome,
    saga_id=st.just("s"),
    saga_type=st.just("order"),
    status=st.sampled_from(["completed", "compensated", "failed", "running", "compensating"]),
    started=st.datetimes(
        min_value=datetime(2026, 3, 1, 10),
        max_value=datetime(2026, 3, 1, 13),
        timezones=st.just(UTC),
    ),
    ended=st.none()
    | st.datetimes(
        min_value=datetime(2026, 3, 1, 10),
        max_value=datetime(2026, 3, 1, 13),
        timezones=st.just(UTC),
    ),
    failed_step=st.none() | st.sampled_from(["reserve_stock", "take_payment"]),
)


@given(st.lists(outcomes, max_size=40))
@example([saga(1, "completed", SINCE, SINCE), saga(2, "failed", NOW, NOW)])
def test_the_minutes_add_up_to_the_sagas_ended_in_the_hour(sagas: list[SagaOutcome]) -> None:
    figures = overview_figures(sagas, NOW)
    assert sum(m.ended for m in figures.minutes) == figures.ended
    assert figures.ended == sum(
        1
        for s in sagas
        if s.ended
        and SINCE <= s.ended <= NOW
        and s.status in ("completed", "compensated", "failed")
    )
    assert sum(m.started for m in figures.minutes) == figures.started
    for m in figures.minutes:
        assert sum(s.count for s in m.segments) == m.ended
        for s in m.segments:
            assert figures.plot_top <= s.y and s.y + s.height <= figures.plot_bottom + 0.01
        assert figures.plot_left <= m.x and m.x + m.width <= figures.plot_right
    if figures.p50 is not None and figures.p99 is not None:
        assert figures.p50 <= figures.p99


def test_a_saga_that_ended_before_it_started_took_no_time() -> None:
    at = NOW - timedelta(minutes=1)
    figures = overview_figures([saga(1, "completed", at + timedelta(seconds=5), at)], NOW)
    assert (figures.ended, figures.p50, figures.p99) == (1, timedelta(0), timedelta(0))
