"""What the console shows, as pure functions: rows, messages, filters, and every value
escaped in its templates."""

from datetime import timedelta

import pytest

from saga.console.guard import ConsoleProblem
from saga.console.listing import ListFilter, cursor
from saga.console.messages import exchanges
from saga.console.rendering import fragment
from saga.console.rows import saga_row
from saga.console.sessions import Session
from saga.core.events import EventRecord
from tests.unit.sagas import Run


def records(run: Run) -> list[EventRecord]:
    return [r for d in run.decisions for r in d.records]


def test_a_row_counts_the_steps_done_and_the_duration_to_the_end_or_to_now() -> None:
    run = Run.start()
    run.succeed()
    running = saga_row(run.state, run.state.created_at + timedelta(seconds=90))
    assert (running.steps_done, running.steps, running.status) == (1, 4, "running")
    assert (running.age, running.duration) == ("1m 30s", "1m 30s")
    run.fail("insufficient_funds")
    run.succeed()  # the stock released
    assert run.state.status == "compensated"
    ended = saga_row(run.state, run.state.created_at + timedelta(hours=1))
    assert (ended.age, ended.duration) == ("1h", "3s")


def test_each_command_is_paired_with_its_reply_or_its_timeout() -> None:
    run = Run.start()
    run.succeed()
    run.time_out()
    run.retry_due()
    run.fail("insufficient_funds")
    run.succeed()  # the charge's undo: its first try's effect was unknown
    sent, ignored = exchanges(records(run))
    assert [(e.step, e.action, e.attempt, e.reply) for e in sent] == [
        ("reserve_stock", "execute", 1, "succeeded"),
        ("take_payment", "execute", 1, "no reply: timed out"),
        ("take_payment", "execute", 2, "failed: insufficient_funds"),
        ("take_payment", "compensate", 1, "compensated"),
        ("reserve_stock", "compensate", 1, None),  # awaiting its reply
    ]
    assert sent[0].reply_id == f"reply-{sent[0].command_id}"
    assert sent[1].reply_id is None
    assert ignored == []


def session(*roles: str) -> Session:
    return Session("s" * 30, "token", "ann@example.com", roles, "csrf")


def test_a_customer_s_list_is_their_own_whatever_the_query_asks() -> None:
    asked = dict(status="completed", saga_type="order", customer="bob@example.com")
    assert ListFilter.of(session(), **asked).customer == "ann@example.com"
    assert ListFilter.of(session("admin"), **asked).customer == "bob@example.com"
    assert ListFilter.of(session("admin"), status="", saga_type=" ", customer="") == ListFilter()


def test_every_filter_is_applied_to_a_saga() -> None:
    state = Run.start().state
    assert ListFilter(status="running", saga_type="order", customer="ann@example.com").keep(state)
    assert not ListFilter(status="completed").keep(state)
    assert not ListFilter(saga_type="shipping").keep(state)
    assert not ListFilter(customer="bob@example.com").keep(state)


def test_a_filter_or_cursor_the_console_did_not_make_is_400() -> None:
    with pytest.raises(ConsoleProblem) as refused:
        ListFilter.of(session(), status="lost", saga_type=None, customer=None)
    assert refused.value.status == 400
    with pytest.raises(ConsoleProblem):
        cursor("not-a-cursor")
    assert cursor(None) is None


def test_markup_a_saga_carries_is_escaped_in_the_rows() -> None:
    state = Run.start().state.model_copy(update={"saga_type": "<script>alert(1)</script>"})
    html = fragment("_row.html", row=saga_row(state, state.created_at))
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
