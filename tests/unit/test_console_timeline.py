"""The console's timeline of a saga: a bar per attempt from command to reply, coloured by
outcome, back-off gaps, parallel steps side by side; drawn from golden histories, from
paths walked through the core, and from any path of the order saga (hypothesis)."""

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from saga.console.timeline_chart import Bar, TimelineChart, duration_words, timeline_chart
from saga.core.decide import CancelSaga
from saga.core.events import (
    Action,
    AttemptFailed,
    CompensationFailed,
    Event,
    EventRecord,
    RetryScheduled,
    SagaReplayed,
    StepCompensated,
    StepFailed,
    StepRequested,
    StepSkipped,
    StepSucceeded,
    StepTimedOut,
    record_from_json,
)
from saga.verify import DefinitionPaths, Try
from services.messages import CATALOGUE
from tests.golden.histories import GOLDEN, names
from tests.unit.console_markup import classes, elements, render, title
from tests.unit.sagas import Run

ROOT: Final = Path(__file__).resolve().parents[2]
ORDER: Final = DefinitionPaths.from_file(ROOT / "services/definitions/order.yaml", CATALOGUE)
REVIEW: Final = DefinitionPaths.from_file(
    ROOT / "examples/fanout/account-review.yaml", inputs=[{"account": "acme", "period": "2026-11"}]
)
LATER: Final = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)


def golden(name: str) -> list[EventRecord]:
    lines = (GOLDEN / name / "events.jsonl").read_text().splitlines()
    return [record_from_json(line) for line in lines]


def of(chart: TimelineChart, step: str, action: str = "execute") -> list[Bar]:
    return [b for b in chart.bars if (b.step, b.action) == (step, action)]


def inside(chart: TimelineChart) -> None:
    for shape in (*chart.bars, *chart.gaps):
        assert shape.width >= 2 and chart.plot_left <= shape.x, shape
        # A bar of no time at the latest moment still has its 2 units, inside the chart.
        assert shape.x + shape.width <= chart.width, shape
        assert shape.y >= 0 and shape.y + shape.height <= chart.axis_y, shape
    assert all(chart.plot_left <= t.x <= chart.plot_right for t in chart.ticks)


def test_a_compensated_saga_undoes_its_done_steps_in_reverse_order_in_time() -> None:
    chart = timeline_chart(golden("compensated"), LATER)
    undo = [b for b in chart.bars if b.action == "compensate"]
    assert [(b.step, b.outcome) for b in undo] == [
        ("take_payment", "compensated"),
        ("reserve_stock", "compensated"),
    ]
    assert undo[0].end <= undo[1].start
    assert of(chart, "create_order")[0].outcome == "failed"
    assert [r.step for r in chart.rows] == [
        "reserve_stock",
        "take_payment",
        "create_order",
        "confirm_stock",
    ]
    inside(chart)


def test_a_retried_step_has_a_bar_per_attempt_and_the_back_off_between() -> None:
    chart = timeline_chart(golden("compensated"), LATER)
    first, second = of(chart, "take_payment")
    assert (first.attempt, first.outcome) == (1, "timed_out")
    assert (second.attempt, second.outcome) == (2, "succeeded")
    (gap,) = chart.gaps
    assert (gap.step, gap.attempt, gap.start, gap.end) == (
        "take_payment",
        2,
        first.end,
        second.start,
    )
    assert first.x + first.width <= gap.x + 0.01 and gap.x + gap.width <= second.x + 0.01
    inside(chart)


def test_a_reply_after_the_timeout_ends_its_attempt_and_no_retry_is_drawn() -> None:
    chart = timeline_chart(golden("completed-on-delivery"), LATER)
    (bar,) = of(chart, "reserve_stock")
    assert bar.outcome == "succeeded" and "timed out" in bar.title and "late" in bar.title
    assert chart.gaps == ()
    (skipped,) = of(chart, "take_payment")
    assert (skipped.outcome, skipped.attempt, skipped.width) == ("skipped", 0, 2)


def test_a_bar_still_awaiting_its_reply_ends_at_now() -> None:
    records = golden("mid-flight")
    now = records[-1].at + timedelta(seconds=3)
    chart = timeline_chart(records, now)
    (pending,) = [b for b in chart.bars if b.outcome == "pending"]
    assert (pending.step, pending.end, chart.end) == ("create_order", now, now)
    assert pending.x + pending.width == chart.plot_right
    inside(chart)


def test_a_replayed_saga_draws_its_later_round_after_the_first() -> None:
    chart = timeline_chart(golden("replayed"), LATER)
    failed, done = of(chart, "take_payment", "compensate")
    assert (failed.outcome, failed.replay, done.outcome, done.replay) == (
        "failed",
        0,
        "compensated",
        1,
    )
    assert failed.end <= done.start and failed.x <= done.x
    (marker,) = chart.markers
    assert marker.kind == "replay" and failed.x <= marker.x <= done.x


def test_retries_of_a_compensation_each_get_a_bar_and_a_gap() -> None:
    chart = timeline_chart(golden("failed-compensation"), LATER)
    refunds = of(chart, "take_payment", "compensate")
    assert [b.attempt for b in refunds] == [1, 2, 3, 4, 5]
    assert {b.outcome for b in refunds} == {"failed"}
    assert [g.attempt for g in chart.gaps] == [2, 3, 4, 5]
    assert "unavailable" in refunds[-1].title
    inside(chart)


def test_a_timeout_then_a_retry_walked_through_the_core() -> None:
    path = ORDER.walk({"take_payment": Try.LOST_COMMAND})
    chart = timeline_chart(path.records, LATER)
    assert [(b.attempt, b.outcome) for b in of(chart, "take_payment")] == [
        (1, "timed_out"),
        (2, "succeeded"),
    ]
    assert [(g.step, g.attempt) for g in chart.gaps] == [("take_payment", 2)]


def test_the_steps_of_a_parallel_group_overlap_in_time_each_on_its_row() -> None:
    chart = timeline_chart(REVIEW.walk({"rebates": Try.LOST_REPLY}).records, LATER)
    bars = [b for b in chart.bars if b.action == "execute" and b.attempt == 1]
    assert {b.step for b in bars} == {"revenue", "rebates", "specialty"}
    assert len({b.y for b in bars}) == 3
    latest_start = max(b.start for b in bars)
    assert all(b.end > latest_start for b in bars)
    assert max(b.x for b in bars) < min(b.x + b.width for b in bars)


def test_a_retry_given_up_when_the_saga_is_undone_ends_its_wait_then() -> None:
    path = REVIEW.walk({"rebates": [Try.TRANSIENT, Try.TRANSIENT], "specialty": Try.REFUSED})
    chart = timeline_chart(path.records, LATER)
    (abandoned,) = [
        r for r in path.records if r.event.type == "StepFailed" and r.event.step == "rebates"
    ]
    (gap,) = chart.gaps
    assert (gap.step, gap.end) == ("rebates", abandoned.at)
    (rebates,) = of(chart, "rebates")
    assert rebates.outcome == "failed" and rebates.title.endswith("; then failed: abandoned")
    assert chart.end == path.records[-1].at


def test_the_partial_draws_each_bar_with_its_data_and_class() -> None:
    chart = timeline_chart(golden("compensated"), LATER)
    svg = render("console/_timeline.html", chart=chart)
    assert svg.get("viewBox") == f"0 0 {chart.width} {chart.height}"
    assert svg.get("style") is None
    rects = elements(svg, "rect", data_action="compensate")
    assert [r.get("data-step") for r in rects] == ["take_payment", "reserve_stock"]
    assert {r.get("data-outcome") for r in rects} == {"compensated"}
    timed_out = elements(svg, "rect", data_step="take_payment", data_outcome="timed_out")
    assert classes(timed_out[0]) == {"bar", "outcome-timed_out", "action-execute"}
    assert float(timed_out[0].get("width", "0")) >= 2
    assert "no reply in time" in title(timed_out[0])
    assert len(elements(svg, "rect", data_attempt="2")) == 2  # the retry and its gap
    labels = [t.text for t in elements(svg, "text") if "row-label" in classes(t)]
    assert labels == [r.step for r in chart.rows]
    assert not [e for e in svg.iter() if e.get("style") is not None]


@pytest.mark.parametrize("name", names())
def test_every_golden_history_draws_a_bar_per_attempt_inside_its_chart(name: str) -> None:
    records = golden(name)
    check_chart(records, timeline_chart(records, records[-1].at + timedelta(seconds=1)))


def test_a_cancel_while_a_step_runs_is_marked_and_undoes_what_was_done() -> None:
    run = Run.start()
    run.succeed()
    run.apply(CancelSaga(by="ops@example.com"))
    run.succeed()  # the charge that was under way when the cancel came
    while run.outbox:
        run.succeed()
    records = [r for d in run.decisions for r in d.records]
    chart = timeline_chart(records, run.now)
    (marker,) = chart.markers
    assert (marker.kind, marker.label) == ("cancel", "cancel asked by ops@example.com")
    undo = [(b.step, b.outcome) for b in chart.bars if b.action == "compensate"]
    assert undo == [("take_payment", "compensated"), ("reserve_stock", "compensated")]
    check_chart(records, chart)


def test_what_a_saga_carries_is_drawn_as_text() -> None:
    hostile = "<script>alert(1)</script>"
    path = ORDER.walk({"create_order": Try.REFUSED})
    records = [
        r.model_copy(update={"event": r.event.model_copy(update={"reason": hostile})})
        if r.event.type == "StepFailed"
        else r
        for r in path.records
    ]
    svg = render("console/_timeline.html", chart=timeline_chart(records, LATER))
    (failed,) = elements(svg, "rect", data_outcome="failed")
    assert hostile in title(failed)
    assert not elements(svg, "script")


def test_an_empty_history_is_an_empty_chart() -> None:
    chart = timeline_chart([], LATER)
    assert (chart.rows, chart.bars, chart.gaps) == ((), (), ())
    render("console/_timeline.html", chart=chart)


def test_durations_read_as_people_say_them() -> None:
    spans = [0, 0.25, 1, 14.8843, 60, 125, 12_000, 7200]
    assert [duration_words(timedelta(seconds=s)) for s in spans] == [
        *("0s", "250ms", "1s", "14.9s", "1m", "2m 5s", "3h 20m", "2h"),
    ]


ACTIONS: Final = [
    *("reserve_stock", "take_payment", "create_order", "confirm_stock"),
    *("undo reserve_stock", "undo take_payment", "undo create_order"),
]


def check_chart(records: Sequence[EventRecord], chart: TimelineChart) -> None:
    inside(chart)
    requested = [r.event for r in records if isinstance(r.event, StepRequested)]
    drawn = [b for b in chart.bars if b.outcome != "skipped"]
    assert sorted((e.step, e.action, e.attempt) for e in requested) == sorted(
        (b.step, b.action, b.attempt) for b in drawn
    )
    for row in chart.rows:
        mine = sorted((b for b in chart.bars if b.step == row.step), key=lambda b: b.start)
        for before, after in itertools.pairwise(mine):
            assert before.end <= after.start, (before, after)
            assert before.x + before.width <= after.x + 0.01, (before, after)
        assert all(row.y <= b.y and b.y + b.height <= row.y + row.height for b in mine)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    answers=st.dictionaries(
        st.sampled_from(ACTIONS), st.lists(st.sampled_from(list(Try)), min_size=1, max_size=4)
    ),
    on=st.sampled_from([0, 1]),
    waited=st.integers(min_value=0, max_value=10_000),
)
# Two bars of a row a millisecond apart at the chart's end: the second is moved after the
# first's 2 units rather than overlap it.
@example(answers={"reserve_stock": [Try.LOST_COMMAND, Try.REFUSED]}, on=0, waited=0)
def test_any_path_of_the_order_saga_draws_a_bar_per_attempt_inside_the_chart(
    answers: dict[str, list[Try]], on: int, waited: int
) -> None:
    path = ORDER.walk(answers, on=on)
    records = path.records
    chart = timeline_chart(records, records[-1].at + timedelta(milliseconds=waited))
    check_chart(records, chart)


STEPS: Final = st.sampled_from(["a", "b"])
ACTION: Final = st.sampled_from(["execute", "compensate"])
T0: Final = datetime(2026, 1, 1, tzinfo=UTC)
# Any step event in any order: logs the core would not write (a reply with no command, a
# retry never sent, a replay anywhere) still draw.
ANY_EVENT: Final = st.one_of(
    st.builds(StepRequested, step=STEPS, action=ACTION, participant=st.just("p"),
              command_id=st.just("c"), command_type=st.just("C"),
              attempt=st.integers(1, 3)),
    st.builds(StepSkipped, step=STEPS),
    st.builds(StepSucceeded, step=STEPS, reply_id=st.just("r"), result=st.just({})),
    st.builds(StepCompensated, step=STEPS, reply_id=st.just("r"), result=st.just({})),
    st.builds(StepFailed, step=STEPS, reason=st.just("no")),
    st.builds(CompensationFailed, step=STEPS, reason=st.just("no")),
    st.builds(AttemptFailed, step=STEPS, action=ACTION, command_id=st.just("c"),
              reply_id=st.just("r"), reason=st.just("later")),
    st.builds(StepTimedOut, step=STEPS, action=ACTION, command_id=st.just("c"),
              attempt=st.integers(1, 3)),
    st.builds(RetryScheduled, step=STEPS, action=ACTION, attempt=st.integers(2, 3),
              due_at=st.just(T0 + timedelta(seconds=5)), timer_id=st.just("t"),
              why=st.just("timeout")),
    st.builds(SagaReplayed, by=st.just("ops")),
)  # fmt: skip


def sent(action: Action = "execute") -> StepRequested:
    return StepRequested(step="a", action=action, participant="p", command_id="c", command_type="C")


SKIP: Final = StepSkipped(step="a")
DONE: Final = StepSucceeded(step="a", reply_id="r", result={})
UNDONE: Final = StepCompensated(step="a", reply_id="r", result={})


@given(
    events=st.lists(
        st.tuples(ANY_EVENT, st.integers(min_value=0, max_value=3000)), min_size=1, max_size=30
    ),
    waited=st.integers(min_value=-1000, max_value=5000),
)
# What the property found: a command sent again, or its step skipped, while one is
# awaited; a late reply after the step was skipped.
@example(events=[(sent(), 0), (sent(), 1)], waited=0)
@example(events=[(sent(), 0), (SKIP, 0)], waited=0)
@example(events=[(sent(), 0), (SKIP, 0), (DONE, 1)], waited=0)
@example(events=[(sent("compensate"), 0), (SKIP, 0), (UNDONE, 1)], waited=0)
def test_any_history_draws_without_error_and_inside_the_chart(
    events: list[tuple[Event, int]], waited: int
) -> None:
    at, records = T0, []
    for seq, (event, step) in enumerate(events, 1):
        at += timedelta(milliseconds=step)
        records.append(EventRecord(seq=seq, at=at, event=event))
    chart = timeline_chart(records, at + timedelta(milliseconds=waited))
    check_chart(records, chart)
    assert all(b.start <= b.end for b in chart.bars) and all(g.start <= g.end for g in chart.gaps)
    render("console/_timeline.html", chart=chart)


def test_a_long_step_name_is_cut_in_its_label_and_whole_in_its_title() -> None:
    name = "a" + "_long" * 12
    record = EventRecord(seq=1, at=T0, event=sent().model_copy(update={"step": name}))
    chart = timeline_chart([record], T0 + timedelta(seconds=1))
    (row,) = chart.rows
    assert (row.step, len(row.label), row.label[-1]) == (name, 24, "…")
    svg = render("console/_timeline.html", chart=chart)
    (band,) = [r for r in elements(svg, "rect") if "row-band" in classes(r)]
    assert title(band) == f"{name}: running"
