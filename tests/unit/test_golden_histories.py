"""Histories that survive upgrades: the golden event logs and snapshots recorded from an
earlier engine (tests/golden, by tests/golden/record.py) still read, fold to the same
state, are written again byte for byte, and lead to the same next decision; a record or a
snapshot of a later schema version is refused, never misread."""

import json
from datetime import datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from saga.core.events import EventRecord, record_from_json
from saga.core.schema import EVENT_SCHEMA, SNAPSHOT_SCHEMA
from saga.core.state import SagaState, fold
from tests.golden.histories import GOLDEN, decide_next, decision_json, definition, input_of, names

HISTORIES = names()


def test_every_kind_of_history_is_kept() -> None:
    ends = {SagaState.model_validate_json(snapshot(n).read_text()).status for n in HISTORIES}
    assert ends == {"completed", "compensated", "failed", "running", "compensating"}
    assert {"mid-flight", "replayed", "failed-past-pivot"} <= set(HISTORIES)


def snapshot(name: str) -> Path:
    return GOLDEN / name / "snapshot.json"


def lines(name: str) -> list[str]:
    return (GOLDEN / name / "events.jsonl").read_text().splitlines()


@pytest.mark.parametrize("name", HISTORIES)
def test_the_log_folds_to_the_snapshot_stored(name: str) -> None:
    records = [record_from_json(line) for line in lines(name)]
    assert fold(records) == SagaState.model_validate_json(snapshot(name).read_text())


@pytest.mark.parametrize("name", HISTORIES)
def test_records_and_snapshot_are_written_as_they_were(name: str) -> None:
    # As the store writes them (saga.store.append_arguments): a changed shape shows here first.
    for line in lines(name):
        assert record_from_json(line).model_dump_json() == line
    text = snapshot(name).read_text().rstrip("\n")
    assert SagaState.model_validate_json(text).model_dump_json(exclude_defaults=True) == text


@pytest.mark.parametrize("name", HISTORIES)
def test_the_next_input_gets_the_same_decision(name: str) -> None:
    upcoming = json.loads((GOLDEN / name / "next.json").read_text())
    state = fold([record_from_json(line) for line in lines(name)])
    decision = decide_next(
        definition(), state, input_of(upcoming["input"]), datetime.fromisoformat(upcoming["now"])
    )
    assert decision_json(decision) == upcoming["decision"]


def test_a_record_of_a_later_schema_is_refused_and_one_of_today_reads() -> None:
    line = json.loads(lines("completed")[0])
    assert record_from_json(json.dumps({**line, "schema_version": EVENT_SCHEMA})).seq == 1
    with pytest.raises(ValidationError, match="a saga event record of schema version 2: this"):
        record_from_json(json.dumps({**line, "schema_version": EVENT_SCHEMA + 1}))
    with pytest.raises(ValidationError, match="schema version '1'"):
        EventRecord.model_validate({**line, "schema_version": "1"})


def test_a_snapshot_of_a_later_schema_is_refused_and_one_of_today_reads() -> None:
    stored = json.loads(snapshot("mid-flight").read_text())
    assert "schema_version" not in stored  # today's snapshots do not write it: it is 1
    today = SagaState.model_validate({**stored, "schema_version": SNAPSHOT_SCHEMA})
    assert today == SagaState.model_validate(stored)
    with pytest.raises(ValidationError, match="a saga state snapshot of schema version 2"):
        SagaState.model_validate_json(json.dumps({**stored, "schema_version": 2}))
