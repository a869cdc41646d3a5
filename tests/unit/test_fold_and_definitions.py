"""The fold refuses broken logs; definitions refuse inconsistent steps."""

import pytest

from saga.core.definition import Command, SagaDefinition, StepDefinition
from saga.core.events import EventRecord, SagaCompleted
from saga.core.state import FoldError, evolve, fold
from tests.unit.sagas import T0, Run


def test_a_log_must_begin_with_saga_started() -> None:
    with pytest.raises(FoldError, match="must begin with SagaStarted"):
        fold([EventRecord(seq=1, at=T0, event=SagaCompleted())])


def test_an_empty_log_has_no_state() -> None:
    with pytest.raises(FoldError, match="cannot be empty"):
        fold([])


def test_a_gap_in_the_log_is_refused() -> None:
    run = Run.start()
    with pytest.raises(FoldError, match="event 5 follows version 2"):
        evolve(run.state, EventRecord(seq=5, at=T0, event=SagaCompleted()))


def test_a_second_saga_started_is_refused() -> None:
    run = Run.start()
    started = run.decisions[0].records[0]
    with pytest.raises(FoldError, match="SagaStarted at seq 3"):
        evolve(run.state, started.model_copy(update={"seq": 3}))


def _step(name: str, **kw: object) -> StepDefinition:
    return StepDefinition(
        name=name,
        participant="stock",
        command=lambda _: Command("ConfirmStock", {"product_ids": ["p1"]}),
        success="StockConfirmed",
        **kw,  # type: ignore[arg-type]
    )


def test_step_names_are_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        SagaDefinition(name="x", version=1, steps=(_step("a"), _step("a")))


def test_a_saga_has_steps() -> None:
    with pytest.raises(ValueError, match="at least one step"):
        SagaDefinition(name="x", version=1, steps=())


def test_compensation_comes_with_its_reply_type() -> None:
    with pytest.raises(ValueError, match="go together"):
        _step("a", compensated="StockReleased")
