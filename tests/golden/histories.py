"""The golden histories as files, read and written alike by the recorder and the test:
`<name>/events.jsonl` (the stored event records, one a line), `<name>/snapshot.json` (the
stored state snapshot) and `<name>/next.json` (the next input, when, and the decision).
`definition.json` is the order definition they ran on."""

import itertools
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from saga.core.decide import (
    Decision,
    ReplaySaga,
    ReplyReceived,
    SagaInput,
    decide,
)
from saga.core.definition import SagaDefinition
from saga.core.document import compile_definition, read_definition
from saga.core.state import SagaState
from services.messages import CATALOGUE

GOLDEN: Final = Path(__file__).resolve().parent
DEFINITION: Final = GOLDEN / "definition.json"


def names() -> list[str]:
    """Every history recorded."""
    return sorted(p.name for p in GOLDEN.iterdir() if (p / "events.jsonl").exists())


def definition() -> SagaDefinition:
    """The definition the histories ran on, compiled by today's engine."""
    return compile_definition(read_definition(json.loads(DEFINITION.read_text())), CATALOGUE)


def input_json(saga_input: SagaInput) -> dict[str, Any]:
    """The next input as data."""
    match saga_input:
        case ReplyReceived():
            return {
                "reply": {
                    "message_id": saga_input.message_id,
                    "causation_id": saga_input.causation_id,
                    "type": saga_input.type,
                    "payload": saga_input.payload,
                }
            }
        case ReplaySaga(by=by):
            return {"replay": {"by": by}}
    raise ValueError(f"no golden form for {saga_input!r}")


def input_of(data: dict[str, Any]) -> SagaInput:
    """The next input from its data."""
    if "reply" in data:
        return ReplyReceived(**data["reply"])
    return ReplaySaga(**data["replay"])


def decide_next(
    saga: SagaDefinition, state: SagaState, saga_input: SagaInput, now: datetime
) -> Decision:
    """The decision on the next input, its ids and random numbers made alike every time."""
    ids = (f"next-{n}" for n in itertools.count(1))
    return decide(saga, state, saga_input, now=now, new_id=lambda: next(ids), rng=lambda: 0.5)


def decision_json(decision: Decision) -> dict[str, Any]:
    """Everything a decision says, as data."""
    return {
        "records": [r.model_dump(mode="json") for r in decision.records],
        "commands": [
            {"participant": c.participant, "envelope": c.envelope.model_dump(mode="json")}
            for c in decision.commands
        ],
        "timers": [t.model_dump(mode="json") for t in decision.timers],
        "cancelled_timers": list(decision.cancelled_timers),
        "state": decision.state.model_dump(mode="json"),
    }
