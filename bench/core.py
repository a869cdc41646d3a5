"""`saga bench --core`: the engine's own work for each saga, timed with no I/O.

The shop's order saga is driven through the pure core as the orchestrator drives it:
the start (with its input check), then for each command the envelope dumped (the
publish) and parsed (the participant), the participant's reply built, dumped and parsed
(the orchestrator), the decision on it, and each decision's append arguments, as the
store sends them to Redis. Each reply is the step's success, its payload made up from
the reply's contract, so every saga completes. No server is needed and nothing waits:
a change to the core's cost shows here alone, without the noise of the sockets, the
broker and the machine's other work that `saga bench` measures besides.
"""

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

from pydantic import BaseModel

from contracts.envelope import Envelope, reply_to
from saga.clock import new_id, utc_now
from saga.core.decide import Decision, ReplyReceived, decide, start_saga
from saga.core.definition import SagaDefinition
from saga.core.events import StepRequested
from saga.eventloop import collector_for_serving
from saga.participant.check_samples import sample_of_schema
from saga.store import append_arguments, timeout_defer

# Timed parts of a saga's work, in the order they happen.
PARTS: Final = ("start", "decisions", "append_arguments", "envelopes")
WARM_UP: Final = 200
# When a command's timeout waits on its outbox line: the store's, at the default settings.
DEFER: Final = timeout_defer()


@dataclass(frozen=True)
class CoreResult:
    """What `saga bench --core` measured: microseconds of CPU-bound work a saga."""

    mode: str
    saga_type: str
    sagas: int
    us_per_saga: float
    # Of it, by part: `start` is the first decision with the input's check.
    parts_us: dict[str, float]
    decisions_per_saga: float
    envelopes_per_saga: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_core(
    definition: SagaDefinition, saga_input: Mapping[str, Any], *, sagas: int
) -> CoreResult:
    """Drive `sagas` sagas of `definition` to their end through the core, timing each part;
    raises RuntimeError if a saga does not complete (the bench would time another path)."""
    replies = _replies(definition)
    spent = dict.fromkeys(PARTS, 0.0)
    counts = {"decisions": 0, "envelopes": 0}
    with collector_for_serving():
        for _ in range(min(WARM_UP, sagas)):
            _one(definition, saga_input, replies, dict.fromkeys(PARTS, 0.0), dict(counts))
        for _ in range(sagas):
            _one(definition, saga_input, replies, spent, counts)
    total = sum(spent.values())
    return CoreResult(
        mode="core",
        saga_type=definition.name,
        sagas=sagas,
        us_per_saga=round(total / sagas * 1e6, 1),
        parts_us={part: round(seconds / sagas * 1e6, 1) for part, seconds in spent.items()},
        decisions_per_saga=round(counts["decisions"] / sagas, 2),
        envelopes_per_saga=round(counts["envelopes"] / sagas, 2),
    )


Replies = dict[tuple[str, str], tuple[str, dict[str, Any]]]


def _replies(definition: SagaDefinition) -> Replies:
    """Each step's (and compensation's) success: its reply type and a made-up payload."""

    def payload(model: type[BaseModel] | None) -> dict[str, Any]:
        if model is None:
            return {}
        sample = sample_of_schema(model.model_json_schema(), what=model.__name__)
        return dict(sample)

    replies: Replies = {}
    for step in definition.steps:
        replies[(step.name, "execute")] = (step.success, payload(step.success_model))
        if step.compensated is not None:
            replies[(step.name, "compensate")] = (
                step.compensated,
                payload(step.compensated_model),
            )
    return replies


def _one(
    definition: SagaDefinition,
    saga_input: Mapping[str, Any],
    replies: Replies,
    spent: dict[str, float],
    counts: dict[str, int],
) -> None:
    clock = time.perf_counter
    began = clock()
    decision = start_saga(
        definition,
        saga_id=new_id(),
        customer="bench@example.com",
        saga_input=saga_input,
        now=utc_now(),
        new_id=new_id,
    )
    spent["start"] += clock() - began
    _arguments(decision, spent, clock)
    state, sent = decision.state, _sent(decision)
    while sent:
        command_id, (step, action, envelope) = sent.popitem()
        began = clock()
        command = Envelope.from_bytes(envelope.to_bytes())
        reply_type, payload = replies[(step, action)]
        reply = Envelope.from_bytes(reply_to(command, reply_type, payload, at=utc_now()).to_bytes())
        spent["envelopes"] += clock() - began
        counts["envelopes"] += 2
        began = clock()
        decision = decide(
            definition,
            state,
            ReplyReceived(
                message_id=reply.message_id,
                causation_id=command_id,
                type=reply.type,
                payload=reply.payload,
            ),
            now=utc_now(),
            new_id=new_id,
            rng=lambda: 0.5,
        )
        spent["decisions"] += clock() - began
        counts["decisions"] += 1
        _arguments(decision, spent, clock)
        state = decision.state
        sent.update(_sent(decision))
    if state.status != "completed":
        raise RuntimeError(f"a {definition.name} saga ended {state.status}: {state.reason}")


def _arguments(decision: Decision, spent: dict[str, float], clock: Callable[[], float]) -> None:
    began = clock()
    append_arguments(
        decision,
        defer=DEFER,
        expected_version=decision.state.version - len(decision.records),
        applied_id=new_id(),
        record_applied=True,
        marker=0,
        created=None,
        definition=None,
        answered=None,
    )
    spent["append_arguments"] += clock() - began


def _sent(decision: Decision) -> dict[str, tuple[str, str, Envelope]]:
    """The decision's commands by id, with the step and action each is for."""
    requested = {
        r.event.command_id: r.event for r in decision.records if isinstance(r.event, StepRequested)
    }
    return {
        c.envelope.message_id: (
            requested[c.envelope.message_id].step,
            requested[c.envelope.message_id].action,
            c.envelope,
        )
        for c in decision.commands
    }
