"""`saga bench --core`: the core's work for each saga, and the append's arguments, timed
with no I/O.

The shop's order saga is driven through the pure core as the orchestrator drives it:
the start (with the input's check), each command's envelope dumped (to be published),
each reply's envelope parsed (as the orchestrator receives it), the decision on it, and
each decision's append arguments, as the store sends them to Redis. The participants'
half (parsing the command, building and dumping the reply) is done too, untimed. Each
reply is the step's success, its payload made up from the reply's contract, so every
saga completes. What the orchestrator's shell does around the core (keys, locks, the
state cache, metrics, the dispatch) is left out, as are the sockets: a change to the
core's cost shows here alone, without the noise of the broker and of the host that
moves `saga bench`'s ratios.
"""

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

from pydantic import BaseModel

from bench.run import CUSTOMER
from contracts.envelope import Envelope, reply_to
from saga.clock import marker_of, new_id, utc_now
from saga.core.decide import Decision, ReplyReceived, decide, start_saga
from saga.core.definition import SagaDefinition
from saga.core.events import StepRequested
from saga.eventloop import collector_for_serving
from saga.orchestrator import reply_input_id
from saga.participant.check_samples import sample_of_schema
from saga.store import append_arguments, timeout_defer

# The timed parts of a saga's work, as reported.
PARTS: Final = ("start", "decisions", "append_arguments", "envelopes")
WARM_UP: Final = 200
# When a command's timeout waits on its outbox line: the store's, at the default settings.
DEFER: Final = timeout_defer()

Clock = Callable[[], float]
# A step's (or compensation's) success, by (step, action): its reply type and payload.
Replies = dict[tuple[str, str], tuple[str, dict[str, Any]]]


class SagaDidNotComplete(RuntimeError):
    """A saga the bench drove did not complete: it would have timed another path."""


@dataclass(frozen=True)
class CoreResult:
    """What `saga bench --core` measured: microseconds of work a saga, by part."""

    mode: str
    saga_type: str
    sagas: int
    us_per_saga: float
    # `start` is the first decision with the input's check; `decisions` the others.
    parts_us: dict[str, float]
    decisions_per_saga: float
    appends_per_saga: float
    envelopes_per_saga: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Tally:
    """Seconds spent in each part and how many of each thing was done."""

    seconds: dict[str, float]
    decisions: int = 0
    appends: int = 0
    envelopes: int = 0

    @classmethod
    def empty(cls) -> "_Tally":
        return cls(dict.fromkeys(PARTS, 0.0))


def run_core(
    definition: SagaDefinition,
    saga_input: Mapping[str, Any],
    *,
    sagas: int,
    clock: Clock = time.perf_counter,
) -> CoreResult:
    """Drive `sagas` sagas of `definition` to their end through the core, timing each part
    (after up to WARM_UP sagas not counted); raises SagaDidNotComplete if one does not
    complete."""
    replies = _replies(definition)
    tally = _Tally.empty()
    with collector_for_serving():  # the collector as the serving processes set it
        for _ in range(min(WARM_UP, sagas)):
            _drive_saga(definition, saga_input, replies, _Tally.empty(), clock)
        for _ in range(sagas):
            _drive_saga(definition, saga_input, replies, tally, clock)
    return CoreResult(
        mode="core",
        saga_type=definition.name,
        sagas=sagas,
        us_per_saga=round(sum(tally.seconds.values()) / sagas * 1e6, 1),
        parts_us={part: round(s / sagas * 1e6, 1) for part, s in tally.seconds.items()},
        decisions_per_saga=round(tally.decisions / sagas, 2),
        appends_per_saga=round(tally.appends / sagas, 2),
        envelopes_per_saga=round(tally.envelopes / sagas, 2),
    )


def _replies(definition: SagaDefinition) -> Replies:
    """Each step's (and compensation's) success: its reply type and a made-up payload."""

    def payload(model: type[BaseModel] | None) -> dict[str, Any]:
        if model is None:
            return {}
        return dict(sample_of_schema(model.model_json_schema(), what=model.__name__))

    replies: Replies = {}
    for step in definition.steps:
        replies[(step.name, "execute")] = (step.success, payload(step.success_model))
        if step.compensated is not None:
            replies[(step.name, "compensate")] = (step.compensated, payload(step.compensated_model))
    return replies


def _drive_saga(
    definition: SagaDefinition,
    saga_input: Mapping[str, Any],
    replies: Replies,
    tally: _Tally,
    clock: Clock,
) -> None:
    began = clock()
    decision = start_saga(
        definition,
        saga_id=new_id(),
        customer=CUSTOMER,
        saga_input=saga_input,
        now=utc_now(),
        new_id=new_id,
    )
    tally.seconds["start"] += clock() - began
    state = decision.state
    _time_append(
        decision,
        tally,
        clock,
        expected_version=0,
        applied_id=f"start:{state.saga_id}",
        created=repr(state.created_at.timestamp()),
        answered=None,
    )
    sent = _sent(decision)
    while sent:
        command_id, (step, action, envelope) = sent.popitem()
        began = clock()
        body = envelope.to_bytes()
        tally.seconds["envelopes"] += clock() - began
        answer = _participant_answer(body, replies[(step, action)])
        began = clock()
        reply = Envelope.from_bytes(answer)
        tally.seconds["envelopes"] += clock() - began
        tally.envelopes += 2
        began = clock()
        decision = decide(
            definition,
            state,
            ReplyReceived(
                message_id=reply.message_id,
                causation_id=reply.causation_id,
                type=reply.type,
                payload=reply.payload,
            ),
            now=utc_now(),
            new_id=new_id,
            rng=lambda: 0.5,
        )
        tally.seconds["decisions"] += clock() - began
        tally.decisions += 1
        _time_append(
            decision,
            tally,
            clock,
            expected_version=state.version,
            applied_id=reply_input_id(reply),
            created=None,
            answered=command_id,
        )
        state = decision.state
        sent.update(_sent(decision))
    if state.status != "completed":
        raise SagaDidNotComplete(
            f"a saga of type {definition.name} ended {state.status}: {state.reason}"
        )


def _participant_answer(body: bytes, success: tuple[str, dict[str, Any]]) -> bytes:
    """The participant's half, not timed: the command parsed, its success dumped."""
    command = Envelope.from_bytes(body)
    reply_type, payload = success
    return reply_to(command, reply_type, payload, at=utc_now()).to_bytes()


def _time_append(
    decision: Decision,
    tally: _Tally,
    clock: Clock,
    *,
    expected_version: int,
    applied_id: str,
    created: str | None,
    answered: str | None,
) -> None:
    """The append's arguments, as the store makes them for the orchestrator's append."""
    began = clock()
    append_arguments(
        decision,
        defer=DEFER,
        expected_version=expected_version,
        applied_id=applied_id,
        record_applied=True,
        marker=marker_of(decision.state.updated_at),
        created=created,
        definition=None,
        answered=answered,
    )
    tally.seconds["append_arguments"] += clock() - began
    tally.appends += 1


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
