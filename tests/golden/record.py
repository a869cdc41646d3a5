"""Record the golden histories: sagas of the order definition run by today's engine (the
pure core, the participants' answers scripted), stored by the Redis store's own append
script (on fakeredis, which runs the same Lua), and saved as the store keeps them.

    .venv/bin/python -m tests.golden.record

Committed once recorded: every later release must fold these logs to these snapshots and
make these decisions, or carry an upcaster (saga.core.schema) tested on them. Re-record
only to add a history, never to make a failing golden test pass.
"""

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Final

from fakeredis import FakeAsyncRedis

from saga.core.decide import Decision, ReplaySaga, ReplyReceived, SagaInput
from saga.core.events import StepRequested
from saga.definitions import read_file
from saga.store import RedisSagaStore
from saga.verify import DefinitionPaths, Try
from saga.verify.script import OK, script
from saga.verify.world import Need, World
from services.messages import CATALOGUE
from tests.golden.histories import DEFINITION, GOLDEN, decide_next, decision_json, input_json

ORDER: Final = Path(__file__).resolve().parents[2] / "services/definitions/order.yaml"
CARD, CASH = 0, 1
Next = Callable[[World], SagaInput]


def late_reply(world: World) -> SagaInput:
    """The first command's reply once more, long after: recorded and ignored."""
    first = next(r.event for r in world.records if isinstance(r.event, StepRequested))
    return ReplyReceived(
        message_id="late-reply",
        causation_id=first.command_id,
        type=world.definition.step(first.step).success,
        payload=dict(world.replies[(first.step, "execute")]),
    )


def replay(_: World) -> SagaInput:
    """An operator replays the failed saga."""
    return ReplaySaga(by="ops@example.com")


def answer_pending(world: World) -> SagaInput:
    """The success reply to the one command the saga awaits."""
    ((command_id, pending),) = world.state.pending.items()
    step = world.definition.step(pending.step)
    success = step.success if pending.action == "execute" else step.compensated
    assert success is not None
    return ReplyReceived(
        message_id="next-reply",
        causation_id=command_id,
        type=success,
        payload=dict(world.replies[(pending.step, pending.action)]),
    )


@dataclass(frozen=True)
class History:
    """One saga to record: its input, its participants' answers, where it stops (None: at
    its end), whether an operator replays it once it failed (and the refund works then),
    and the input that comes next."""

    on: int
    answers: dict[str, Try | list[Try]]
    next_input: Next
    stop_at: tuple[str, str] | None = None
    replayed: bool = False


HISTORIES: Final = {
    "completed": History(CARD, {"take_payment": Try.DUPLICATE}, late_reply),
    "completed-on-delivery": History(CASH, {"reserve_stock": Try.LATE}, late_reply),
    "compensated": History(
        CARD, {"take_payment": Try.LOST_REPLY, "create_order": Try.REFUSED}, late_reply
    ),
    "failed-compensation": History(
        CARD, {"create_order": Try.REFUSED, "undo take_payment": [Try.TRANSIENT] * 5}, replay
    ),
    "failed-past-pivot": History(
        CASH, {"confirm_stock": [Try.EFFECT_UNKNOWN, Try.REFUSED]}, replay
    ),
    "mid-flight": History(
        CARD, {"take_payment": Try.LOST_REPLY}, answer_pending, stop_at=("create_order", "execute")
    ),
    "mid-compensation": History(
        CARD,
        {"create_order": Try.REFUSED, "undo take_payment": Try.TRANSIENT},
        answer_pending,
        stop_at=("reserve_stock", "compensate"),
    ),
    "replayed": History(
        CARD,
        {"create_order": Try.REFUSED, "undo take_payment": Try.REFUSED},
        late_reply,
        replayed=True,
    ),
}


def run(paths: DefinitionPaths, history: History) -> World:
    """The saga as far as the history goes."""
    answers = script(history.answers)
    world = World.start(paths.definition, paths.inputs[history.on].value, paths.replies)
    while (need := world.run()) is not None:
        if (need.step, need.action) == history.stop_at:
            return world
        world.choose(need, answers.get((need.step, need.action), OK))
    if history.replayed:
        assert world.state.status == "failed"
        world.choose(Need("take_payment", "compensate"), OK)
        world.apply(ReplaySaga(by="ops@example.com"))
        while (need := world.run()) is not None:
            world.choose(need, OK)
    return world


async def stored(world: World) -> tuple[list[str], str]:
    """The saga's event records and snapshot as the Redis store writes them."""
    redis = FakeAsyncRedis(decode_responses=True)
    store = RedisSagaStore(redis, "golden")
    everything = Decision(records=tuple(world.records), commands=(), timers=(), state=world.state)
    await store.create(everything, marker=0)
    keys = store.keys(world.state.saga_id)
    snapshot = await redis.hget(keys.state, "state")
    assert snapshot is not None
    return await store.raw_events(world.state.saga_id), snapshot


def record() -> None:
    paths = DefinitionPaths.from_file(ORDER, CATALOGUE)
    document = read_file(ORDER).model_dump(mode="json")
    DEFINITION.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    for name, history in HISTORIES.items():
        world = run(paths, history)
        events, snapshot = asyncio.run(stored(world))
        folder = GOLDEN / name
        folder.mkdir(exist_ok=True)
        (folder / "events.jsonl").write_text("".join(f"{line}\n" for line in events))
        (folder / "snapshot.json").write_text(snapshot + "\n")
        saga_input = history.next_input(world)
        now = world.state.updated_at + timedelta(seconds=1)
        decision = decide_next(paths.definition, world.state, saga_input, now)
        upcoming = {
            "input": input_json(saga_input),
            "now": now.isoformat(),
            "decision": decision_json(decision),
        }
        (folder / "next.json").write_text(json.dumps(upcoming, indent=2, sort_keys=True) + "\n")
        print(f"{name}: {world.state.status}, {len(events)} events")


if __name__ == "__main__":
    record()
