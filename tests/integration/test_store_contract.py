"""One contract for the event store on a real Redis and on fakeredis (the embedded demo's):
atomic appends, one named conflict, duplicates, the outbox and timers."""

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest
from fakeredis import FakeAsyncRedis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from saga.clock import marker_of
from saga.connections import AnyRedis
from saga.core.decide import Decision, ReplaySaga, ReplyReceived, Timer, decide, start_saga
from saga.keyspace import customer_index
from saga.retention import Trimmer
from saga.store import (
    LayoutMismatch,
    Position,
    RedisSagaStore,
    VersionConflict,
    _command_json,
)
from tests.nodes import RedisClusterNodes, cluster_client
from tests.servers import drop_namespace, redis_or_skip
from tests.shop_saga import ORDER_SAGA
from tests.unit.sagas import SUCCESS, T0, Run, order_input


@pytest.fixture(params=["redis", "fakeredis", "cluster"])
async def store(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[RedisSagaStore]:
    if request.param == "fakeredis":
        fake = FakeAsyncRedis(decode_responses=True)
        yield RedisSagaStore(fake, namespace)
        await fake.aclose()
        return
    if request.param == "cluster":
        # Four buckets on three primaries: sagas of one test land in several buckets.
        cluster = cluster_client(request.getfixturevalue("redis_cluster"))
        try:
            yield RedisSagaStore(cluster, namespace, buckets=4)
        finally:
            await drop_namespace(cluster, namespace)
            await cluster.aclose()
        return
    redis = await redis_or_skip()
    try:
        yield RedisSagaStore(redis, namespace)
    finally:
        await drop_namespace(redis, namespace)
        await redis.aclose()


async def test_a_started_saga_is_durable_with_its_first_command(store: RedisSagaStore) -> None:
    run = Run.start()
    await store.create(run.decisions[0], marker=1)
    assert await store.load("saga1") == run.state
    assert [r.event.type for r in await store.events("saga1")] == ["SagaStarted", "StepRequested"]
    assert [c.envelope for c in await store.outbox("saga1")] == [run.pending.envelope]
    assert await store.ids(limit=10) == ["saga1"]


async def test_a_saga_is_started_once_even_when_the_start_is_retried(
    store: RedisSagaStore,
) -> None:
    run = Run.start()
    await store.create(run.decisions[0], marker=1)
    await store.create(run.decisions[0], marker=2)  # a retry whose first answer was lost
    assert len(await store.events("saga1")) == 2


async def test_concurrent_appends_from_one_version_raise_one_named_conflict(
    store: RedisSagaStore,
) -> None:
    run = Run.start()
    await store.create(run.decisions[0], marker=1)
    reserve = run.pending.envelope
    decisions = [
        decide(
            ORDER_SAGA,
            run.state,
            ReplyReceived(
                f"reply{n}", reserve.message_id, "StockReserved", SUCCESS["ReserveStock"]
            ),
            now=run.state.updated_at,
            new_id=lambda n=n: f"cmd{n}",
            rng=lambda: 0.5,
        )
        for n in range(2)
    ]
    results = await asyncio.gather(
        *(
            store.append(d, expected_version=run.state.version, applied_id=f"reply{n}", marker=2)
            for n, d in enumerate(decisions)
        ),
        return_exceptions=True,
    )
    conflicts = [r for r in results if isinstance(r, VersionConflict)]
    assert len(conflicts) == 1
    assert results.count("appended") == 1
    assert conflicts[0].expected == 2 and conflicts[0].actual == 4
    # Exactly one of the two decisions is in the log and the outbox.
    assert len(await store.events("saga1")) == 4
    assert len(await store.outbox("saga1")) == 2  # the start's command, and one charge


async def test_an_applied_message_is_not_applied_again(store: RedisSagaStore) -> None:
    run = Run.start()
    await store.create(run.decisions[0], marker=1)
    decision = run.succeed()
    first = await store.append(decision, expected_version=2, applied_id="r1", marker=2)
    again = await store.append(decision, expected_version=4, applied_id="r1", marker=3)
    assert (first, again) == ("appended", "duplicate")
    assert len(await store.events("saga1")) == 4


async def test_nothing_is_written_when_the_version_check_fails(store: RedisSagaStore) -> None:
    run = Run.start()
    await store.create(run.decisions[0], marker=1)
    decision = run.succeed()
    with pytest.raises(VersionConflict):
        await store.append(decision, expected_version=7, applied_id="r1", marker=2)
    assert len(await store.events("saga1")) == 2
    assert await store.load("saga1") == run.decisions[0].state
    # The message was not recorded as applied either: a retry with the right version works.
    assert await store.append(decision, expected_version=2, applied_id="r1", marker=2) == "appended"


async def test_the_outbox_marker_goes_only_when_the_outbox_is_empty(store: RedisSagaStore) -> None:
    run = Run.start()
    await store.create(run.decisions[0], marker=10)
    # Someone re-marked the saga since marker 10 was read: the marker stays.
    await store.mark_outbox("saga1", 20)
    await store.clear_outboxes([("saga1", [run.pending.envelope.message_id], 10)])
    assert await store.outbox("saga1") == []
    assert await store.outbox_pending() == 1
    await store.clear_outboxes([("saga1", [], 20)])
    assert await store.outbox_pending() == 0


async def test_an_outbox_is_claimed_once_until_its_new_marker_is_past_the_cutoff(
    store: RedisSagaStore,
) -> None:
    await store.create(Run.start().decisions[0], marker=10)
    await store.mark_outbox("saga2", 30)
    assert await store.claim_outboxes(cutoff=20, now=100, limit=10) == ["saga1"]
    # Claimed: marked as of 100, so a cutoff before that passes it by.
    assert await store.claim_outboxes(cutoff=40, now=110, limit=10) == ["saga2"]
    assert await store.claim_outboxes(cutoff=99, now=120, limit=10) == []
    # At most `limit` of each bucket, the longest left first.
    assert store.keyspace.bucket("saga1") != store.keyspace.bucket(
        "saga2"
    ) or await store.claim_outboxes(cutoff=200, now=130, limit=1) == ["saga1"]
    assert await store.claim_outboxes(cutoff=200, now=130, limit=10) != []
    # The claim is the marker the claimer clears under.
    [command] = await store.outbox("saga1")
    await store.clear_outboxes([("saga1", [command.envelope.message_id], 130)])
    assert await store.claim_outboxes(cutoff=200, now=140, limit=10) == ["saga2"]
    assert await store.outbox_pending() == 1


async def test_the_oldest_waiting_command_is_found_though_the_relay_marks_anew(
    store: RedisSagaStore,
) -> None:
    assert await store.outbox_oldest() is None
    run = Run.start()
    await store.create(run.decisions[0], marker=10)
    # The relay's claim marks the outbox as of now: the command is as old as before.
    await store.claim_outboxes(cutoff=20, now=1_000, limit=10)
    assert await store.outbox_oldest() == run.pending.envelope.sent_at
    await store.clear_outboxes([("saga1", [run.pending.envelope.message_id], 1_000)])
    assert await store.outbox_oldest() is None


async def test_timers_due_count_those_past_their_time_and_not_taken(
    store: RedisSagaStore,
) -> None:
    run = Run.start()
    await store.create(run.decisions[0], marker=1)
    await unanswered(store, run)
    due = marker_of(run.decisions[0].timers[0].due_at)
    assert await store.timers.due(now=due - 1) == 0
    assert await store.timers.due(now=due) == 1
    await store.timers.claim(now=due, lease=10, limit=10)  # taken: hidden for the lease
    assert await store.timers.due(now=due + 5) == 0
    assert await store.timers.due(now=due + 10) == 1


async def test_the_oldest_running_sagas_come_oldest_first(store: RedisSagaStore) -> None:
    for saga_id, seconds in (("later", 5), ("first", 0)):
        decision = start_saga(
            ORDER_SAGA,
            saga_id=saga_id,
            customer="ann@example.com",
            saga_input=order_input().model_dump(mode="json"),
            now=T0 + timedelta(seconds=seconds),
            new_id=lambda: uuid.uuid4().hex,
        )
        await store.create(decision, marker=1)
    assert [s.saga_id for s in await store.oldest_active(10)] == ["first", "later"]
    assert [s.saga_id for s in await store.oldest_active(1)] == ["first"]


async def test_keys_of_one_saga_share_a_hash_tag(store: RedisSagaStore, namespace: str) -> None:
    keys = store.keys("abc").all()
    assert all(k.startswith(f"{namespace}:") for k in keys)
    assert len({key_slot(k.encode()) for k in keys}) == 1
    if store.keyspace.clustered:  # and so do the index entries its append writes
        state = Run.start().state
        assert len({key_slot(k.encode()) for k in store._append_keys(state)}) == 1
    else:  # named as they always were
        assert all(k.startswith(f"{namespace}:saga:{{abc}}:") for k in keys)


async def test_timers_are_claimed_once_until_their_lease_ends(store: RedisSagaStore) -> None:
    run = Run.start()
    await store.create(run.decisions[0], marker=1)
    await unanswered(store, run)
    (timer,) = run.decisions[0].timers
    due = marker_of(timer.due_at)
    assert await store.timers.claim(now=due - 1, lease=10, limit=10) == []
    first = await store.timers.claim(now=due, lease=10, limit=10)
    assert [t for _, t in first] == [timer]
    # Claimed: hidden from a second claimer until the lease ends.
    assert await store.timers.claim(now=due + 5, lease=10, limit=10) == []
    again = await store.timers.claim(now=due + 10, lease=10, limit=10)
    assert [t for _, t in again] == [timer]
    await store.timers.delete(again[0][1])
    assert await store.timers.count() == 0


async def unanswered(store: RedisSagaStore, run: Run) -> None:
    """The saga's commands were published and not answered at once: the dispatcher clears
    them from the outbox, and their timeouts join the timers' index."""
    ids = [c.envelope.message_id for c in run.outbox]
    await store.clear_outboxes([(run.state.saga_id, ids, 1)])


async def answer_first(store: RedisSagaStore, run: Run, decision: Decision) -> None:
    """Store `decision`, made on the reply to the saga's first command."""
    answered = run.decisions[0].commands[0].envelope.message_id
    await store.append(decision, expected_version=2, applied_id="r1", marker=2, answered=answered)


async def claimed_when_due(store: RedisSagaStore, timer: Timer) -> list[Timer]:
    """The timers a claim at `timer`'s due time takes."""
    claimed = await store.timers.claim(now=marker_of(timer.due_at), lease=10, limit=10)
    return [t for _, t in claimed]


async def test_a_timeout_waits_with_its_command_and_goes_with_its_answer(
    store: RedisSagaStore,
) -> None:
    run = Run.start()
    await store.create(run.decisions[0], marker=1)
    # Answered within the grace, as most are: the timeout never was in the index.
    assert await store.timers.count() == 0
    decision = run.succeed()
    await answer_first(store, run, decision)
    assert await store.timers.count() == 0
    fields = await store._redis.hkeys(store.keys("saga1").state)
    assert [f for f in fields if f.startswith("t:")] == []  # on its command's line
    # Left unanswered after its publication: its timeout joins the index, at its time.
    await unanswered(store, run)
    (timer,) = decision.timers
    assert await claimed_when_due(store, timer) == [timer]


async def test_a_reply_ignored_leaves_the_outbox_but_not_the_timeout(
    store: RedisSagaStore,
) -> None:
    run = Run.start()
    await store.create(run.decisions[0], marker=1)
    # A reply to a command the saga still awaits after it (the core has none such today:
    # it cancels the timeout of each command it stops awaiting): the command was
    # published, so it leaves the outbox; the step waits on, so its timeout stays.
    decision = replace(run.succeed(), cancelled_timers=())
    await answer_first(store, run, decision)
    assert await store.outbox("saga1") == list(decision.commands)  # the next one only
    (timer,) = run.decisions[0].timers
    assert await claimed_when_due(store, timer) == [timer]


async def test_a_decision_forgets_the_timers_it_cancels(store: RedisSagaStore) -> None:
    run = Run.start()
    await store.create(run.decisions[0], marker=1)
    await unanswered(store, run)
    assert await store.timers.count() == 1
    (first,) = run.decisions[0].timers
    decision = run.succeed()
    await store.append(decision, expected_version=2, applied_id="r1", marker=2)
    # The answered command's timeout is gone; the next command's waits with it.
    assert await claimed_when_due(store, first) == []
    assert await store.timers.count() == 0
    await unanswered(store, run)
    (timer,) = decision.timers
    assert await claimed_when_due(store, timer) == [timer]


async def test_a_timeout_shorter_than_the_grace_joins_the_index_at_once(
    store: RedisSagaStore,
) -> None:
    # The same sagas under a grace of a minute: the order saga's 10 s timeouts come due
    # before the relay's round would, so none waits with its command.
    store = RedisSagaStore(
        store._redis,
        store.keyspace.namespace,
        buckets=len(store.keyspace.buckets),
        relay_grace=60,
    )
    run = Run.start()
    await store.create(run.decisions[0], marker=1)
    assert await store.timers.count() == 1
    decision = run.succeed()
    await answer_first(store, run, decision)
    (timer,) = decision.timers
    [(_, due)] = await store.timers.claim(now=marker_of(timer.due_at), lease=10, limit=10)
    assert due == timer  # the first one's cancelled, the second one's there


async def test_commands_sent_together_leave_the_outbox_each_with_its_own_answer(
    store: RedisSagaStore,
) -> None:
    # Two commands of one decision (as a parallel group sends them), each with a
    # timeout that waits on its line.
    run = Run.start()
    first, second = run.decisions[0], run.succeed()
    together = replace(
        first, commands=first.commands + second.commands, timers=first.timers + second.timers
    )
    await store.create(together, marker=1)
    one, other = (c.envelope.message_id for c in together.commands)
    # The first one's answer: its line and timeout go, the other's stay, and the marker.
    answer = replace(second, commands=(), timers=(), cancelled_timers=(first.timers[0].timer_id,))
    await store.append(answer, expected_version=2, applied_id="r1", marker=2, answered=one)
    assert [c.envelope.message_id for c in await store.outbox("saga1")] == [other]
    assert await store.outbox_pending() == 1
    assert await store.timers.count() == 0
    await store.clear_outboxes([("saga1", [other], 1)])  # left unanswered
    assert [t for _, t in await store.timers.claim(now=10**18, lease=1, limit=10)] == list(
        second.timers
    )


async def test_a_timer_whose_data_is_gone_is_dropped_when_claimed(store: RedisSagaStore) -> None:
    run = Run.start()
    await store.create(run.decisions[0], marker=1)
    await unanswered(store, run)
    assert await store.timers.count() == 1
    await store._redis.delete(store.keys("saga1").state)  # trimmed meanwhile, say
    assert await store.timers.claim(now=10**18, lease=1, limit=10) == []
    assert await store.timers.count() == 0


async def test_the_relay_taking_an_outbox_up_puts_its_timeouts_in_the_index(
    store: RedisSagaStore,
) -> None:
    run = Run.start()
    await store.create(run.decisions[0], marker=1)
    assert [c.envelope for c in await store.take_outbox("saga1")] == [run.pending.envelope]
    (timer,) = run.decisions[0].timers
    assert await store.timers.due(now=marker_of(timer.due_at) - 1) == 0
    assert await store.timers.due(now=marker_of(timer.due_at)) == 1
    await store.take_outbox("saga1")  # again: still one
    assert await store.timers.count() == 1
    # Its answer, come after all, takes it out of the index too.
    await answer_first(store, run, run.succeed())
    assert await claimed_when_due(store, timer) == []


async def stored(store: RedisSagaStore, saga_id: str, run: Run) -> None:
    """Store every decision of `run` as saga `saga_id`."""
    for n, decision in enumerate(run.decisions):
        state = decision.state.model_copy(update={"saga_id": saga_id})
        renamed = replace(decision, state=state)
        if n == 0:
            await store.create(renamed, marker=1)
        else:
            await store.append(
                renamed,
                expected_version=state.version - len(decision.records),
                applied_id=None,
                marker=1,
            )


async def test_the_active_index_forgets_ended_sagas_and_starts_that_never_began(
    store: RedisSagaStore,
) -> None:
    completed, running = Run.start(), Run.start()
    for _ in range(4):
        completed.succeed()
    await stored(store, "done", completed)
    await stored(store, "running", running)
    now = T0.timestamp()
    # What a crash leaves: an ended saga still listed, and starts listed with no saga
    # (one long ago, one a moment ago: its first append may be on its way).
    for saga_id, created in [("done", now), ("never", now - 61), ("starting", now - 1)]:
        await store._redis.zadd(store.keyspace.bucket(saga_id).active, {saga_id: created})
    assert await store.forget_finished(now=now) == 2
    assert await store.active_count() == 2
    assert await store.active_scores(["done", "never", "starting", "running"]) == [
        None,
        None,
        now - 1,
        running.state.created_at.timestamp(),
    ]
    assert await store.active_scores([]) == []
    assert await store.raw_states([]) == []


async def test_ended_sagas_are_trimmed_after_the_retention_and_failed_ones_kept(
    store: RedisSagaStore, namespace: str
) -> None:
    completed, compensated, failed = Run.start(), Run.start(), Run.start()
    for _ in range(4):
        completed.succeed()
    compensated.fail("out_of_stock")
    failed.succeed()
    failed.fail("card_declined")
    failed.fail("broken")
    running = Run.start()
    for saga_id, run in [
        ("done", completed),
        ("undone", compensated),
        ("failed", failed),
        ("running", running),
    ]:
        await stored(store, saga_id, run)
    ended_at = completed.state.updated_at.timestamp()
    assert await store.active_count() == 1

    def trimmer(age_of_done: float) -> Trimmer:
        """A trimmer keeping 60 s, when the completed saga is `age_of_done` seconds old."""
        now = completed.state.updated_at + timedelta(seconds=age_of_done)
        return Trimmer(store, retention=60, interval=1, clock=lambda: now)

    # The compensated saga ended 3 s before the completed one.
    assert compensated.state.updated_at.timestamp() == ended_at - 3
    assert await trimmer(56).run_once() == 0  # neither is 60 s old
    assert await trimmer(58).run_once() == 1
    assert await store.load("undone") is None and await store.load("done") is not None
    assert await trimmer(61).run_once() == 1
    assert await store.load("done") is None and await store.load("undone") is None
    assert await store.events("done") == []
    assert sorted(await store.ids(limit=10)) == ["failed", "running"]
    assert sorted(await store.ids(customer_index("ann@example.com"), limit=10)) == [
        "failed",
        "running",
    ]
    assert await store.ended_before(ended_at + 3600, 10) == []
    assert (await store.load("failed")).status == "failed"  # type: ignore[union-attr]
    assert await trimmer(3600).run_once() == 0


# Text a JSON codec could get wrong: quotes, backslashes, control characters, accents,
# characters outside the BMP, and what looks like an escape.
AWKWARD = 'Straße 1, "Hof" \\ 2\n\t😀 ☃ \\u00e9 \u2028 </script>'


async def test_an_append_writes_the_saga_s_own_json_byte_for_byte(store: RedisSagaStore) -> None:
    run = Run.start(delivery_address=AWKWARD, description=AWKWARD * 20)
    await store.create(run.decisions[0], marker=1)
    decision = run.succeed()
    await store.append(decision, expected_version=2, applied_id="r1", marker=7)
    redis, keys = store._redis, store.keys("saga1")
    commands = [c for d in run.decisions for c in d.commands]
    (timer,) = decision.timers  # the first command's timeout was cancelled
    records = [r.model_dump_json() for d in run.decisions for r in d.records]
    # One hash: the version and snapshot, the events, the applied ids, the outbox (a line
    # a command: the first one's timeout cancelled, the second's waiting with it).
    assert await redis.hgetall(keys.state) == {
        "v": str(run.state.version),
        "state": run.state.model_dump_json(exclude_defaults=True),
        **{f"e:{seq}": record for seq, record in enumerate(records, 1)},
        "a:start:saga1": "1",
        "a:r1": "1",
        "outbox": "\n".join(
            [
                f"id1\t\t\t{_command_json(commands[0])}\t",
                f"id100\t{marker_of(timer.due_at)}\t{timer.timer_id}"
                f"\t{_command_json(commands[1])}\t{timer.model_dump_json()}",
            ]
        ),
    }
    assert [r.model_dump_json() for r in await store.events("saga1")] == records
    assert {c.envelope.message_id: c for c in await store.outbox("saga1")} == {
        c.envelope.message_id: c for c in commands
    }
    assert not await redis.exists(keys.events, keys.applied, keys.outbox)  # the earlier layout's
    bucket = store.keyspace.bucket("saga1")
    assert await redis.zscore(bucket.outbox_index, "saga1") == 7
    assert await redis.zrange(bucket.timers, 0, -1) == []  # the timeout waits
    await store.clear_outboxes([("saga1", [c.envelope.message_id for c in commands], 7)])
    assert await redis.zrange(bucket.timers, 0, -1, withscores=True) == [
        (f"saga1/{timer.timer_id}", marker_of(timer.due_at))
    ]
    assert await redis.hget(keys.state, f"t:{timer.timer_id}") == timer.model_dump_json()
    assert await redis.hget(keys.state, "outbox") == ""
    created = run.state.created_at.timestamp()
    for index in (bucket.sagas, bucket.active, bucket.customer("ann@example.com")):
        assert await redis.zscore(index, "saga1") == created


async def test_a_reply_only_recorded_is_checked_as_a_duplicate_but_its_id_not_kept(
    store: RedisSagaStore,
) -> None:
    run = Run.start()
    await store.create(run.decisions[0], marker=1)
    decision = run.succeed()
    outcome = await store.append(
        decision, expected_version=2, applied_id="r1", marker=2, record_applied=False
    )
    assert outcome == "appended"
    applied = await store._redis.hkeys(store.keys("saga1").state)
    assert [f for f in applied if f.startswith("a:")] == ["a:start:saga1"]
    await store.create(run.decisions[0], marker=1)  # the start's id is kept: a duplicate
    assert await store.load("saga1") == run.state


async def _start_sagas(store: RedisSagaStore, count: int, *, same_time: bool = False) -> list[str]:
    """`count` sagas of ann's, saga0 the oldest; each a second after the one before (all at
    one time if `same_time`)."""
    for n in range(count):
        ids = (f"s{n}-cmd{k}" for k in itertools.count())
        decision = start_saga(
            ORDER_SAGA,
            saga_id=f"saga{n}",
            customer="ann@example.com",
            saga_input=order_input().model_dump(mode="json"),
            now=T0 + timedelta(seconds=0 if same_time else n),
            new_id=lambda ids=ids: next(ids),
        )
        await store.create(decision, marker=1)
    return [f"saga{n}" for n in reversed(range(count))]


@pytest.mark.parametrize("same_time", [False, True])
async def test_pages_of_sagas_follow_a_cursor_newest_first_each_saga_once(
    store: RedisSagaStore, same_time: bool
) -> None:
    newest_first = await _start_sagas(store, 7, same_time=same_time)
    seen: list[str] = []
    before = None
    for _ in range(4):
        page = await store.page(lambda _: True, before=before, limit=3)
        seen += [s.saga_id for _, s in page.sagas]
        before = page.next
        if before is None:
            break
    assert seen == newest_first
    # A saga started meanwhile does not shift the later pages.
    first = await store.page(lambda _: True, limit=3)
    await _start_sagas_after(store, "saga-late")
    second = await store.page(lambda _: True, before=first.next, limit=3)
    assert [s.saga_id for _, s in second.sagas] == newest_first[3:6]


async def _start_sagas_after(store: RedisSagaStore, saga_id: str) -> None:
    decision = start_saga(
        ORDER_SAGA,
        saga_id=saga_id,
        customer="bob@example.com",
        saga_input=order_input().model_dump(mode="json"),
        now=T0 + timedelta(hours=1),
        new_id=lambda: f"{saga_id}-cmd",
    )
    await store.create(decision, marker=1)


async def test_a_filtered_page_keeps_only_what_the_filter_accepts_and_stops_at_its_scan(
    store: RedisSagaStore,
) -> None:
    await _start_sagas(store, 6)
    even = await store.page(lambda s: int(s.saga_id[4:]) % 2 == 0, limit=2)
    assert [s.saga_id for _, s in even.sagas] == ["saga4", "saga2"]
    rest = await store.page(lambda s: int(s.saga_id[4:]) % 2 == 0, before=even.next, limit=2)
    assert ([s.saga_id for _, s in rest.sagas], rest.next) == (["saga0"], None)
    # Past its scan, a page ends early and says where to go on.
    none = await store.page(lambda _: False, limit=2, scan=3)
    assert none.sagas == [] and none.next is not None
    assert none.next.saga_id == "saga3"


async def test_newer_sagas_are_those_started_after_a_position(store: RedisSagaStore) -> None:
    await _start_sagas(store, 3)
    top = (await store.page(lambda _: True, limit=1)).sagas[0][0]
    assert await store.newer(lambda _: True, after=top, limit=5) == []
    await _start_sagas_after(store, "saga-late")
    newer = await store.newer(lambda _: True, after=top, limit=5)
    assert [s.saga_id for _, s in newer] == ["saga-late"]
    assert await store.newer(lambda s: s.customer == "ann@example.com", after=top, limit=5) == []
    assert Position.parse(top.text()) == top
    with pytest.raises(ValueError):
        Position.parse("nonsense")


async def test_recent_sagas_are_those_started_since_and_those_still_running(
    store: RedisSagaStore,
) -> None:
    await _start_sagas(store, 3)  # at T0, T0+1s, T0+2s, all running
    await _start_sagas_after(store, "saga-late")  # bob's, an hour later
    late = (T0 + timedelta(hours=1)).timestamp()
    assert {s.saga_id for s in await store.recent(since=late)} == {
        "saga0",
        "saga1",
        "saga2",
        "saga-late",
    }
    # A customer's recent sagas are theirs, of those started since.
    assert await store.recent(since=late, customer="ann@example.com") == []
    assert [s.saga_id for s in await store.recent(since=0, customer="ann@example.com")] == [
        "saga2",
        "saga1",
        "saga0",
    ]
    assert await store.on_version("order", 1) == 4
    assert await store.on_version("order", 2) == 0


async def test_a_failed_saga_is_recent_by_when_it_failed_until_a_replay_takes_it_up(
    store: RedisSagaStore,
) -> None:
    run = Run.start()
    run.succeed()
    run.fail("card_declined")
    while not run.state.terminal:  # the release is refused until its tries run out
        run.fail("warehouse_locked") if run.outbox else run.retry_due()
    await stored(store, "stuck", run)
    failed_at = run.state.updated_at.timestamp()
    assert run.state.status == "failed"
    # Started long before `since`, failed after it: recent all the same.
    assert [s.saga_id for s in await store.recent(since=failed_at - 0.5)] == ["stuck"]
    assert await store.recent(since=failed_at + 1) == []
    replaying = len(run.decisions)
    run.apply(ReplaySaga(by="operator"))
    await stored_from(store, "stuck", run, replaying)
    assert await store.recent(since=failed_at - 0.5) != []  # running now: still listed
    assert await store._redis.zscore(store.keyspace.bucket("stuck").failed, "stuck") is None


async def stored_from(store: RedisSagaStore, saga_id: str, run: Run, first: int) -> None:
    """Store the decisions of `run` from the `first` on, as saga `saga_id`."""
    for decision in run.decisions[first:]:
        state = decision.state.model_copy(update={"saga_id": saga_id})
        await store.append(
            replace(decision, state=state),
            expected_version=state.version - len(decision.records),
            applied_id=None,
            marker=1,
        )


async def test_recent_sagas_include_those_that_ended_since_though_they_started_before(
    store: RedisSagaStore,
) -> None:
    completed = Run.start()
    for _ in range(4):
        completed.succeed()
    await stored(store, "done", completed)
    started, ended = completed.state.created_at, completed.state.updated_at
    since = (started + (ended - started) / 2).timestamp()
    assert [s.saga_id for s in await store.recent(since=since)] == ["done"]
    assert await store.recent(since=ended.timestamp() + 1) == []


@pytest.mark.parametrize("redis", ["cluster"], indirect=True)
async def test_a_process_counting_other_buckets_than_the_namespace_s_refuses_to_start(
    redis: AnyRedis, namespace: str
) -> None:
    await RedisSagaStore(redis, namespace, buckets=8).check_layout()  # the first
    await RedisSagaStore(redis, namespace, buckets=8).check_layout()  # agrees
    with pytest.raises(LayoutMismatch, match="set SAGA_REDIS_BUCKETS=8"):
        await RedisSagaStore(redis, namespace, buckets=16).check_layout()


@pytest.mark.parametrize("redis", ["cluster"], indirect=True)
async def test_sagas_spread_over_every_primary_of_a_cluster(
    redis: AnyRedis, redis_cluster: RedisClusterNodes, namespace: str
) -> None:
    store = RedisSagaStore(redis, namespace, buckets=64)  # 16 might leave a primary out
    for n in range(40):
        await store.create(started(f"spread-{n}"), marker=1)
    owners = {n.port: n.count_keys(f"{namespace}:*") for n in redis_cluster.primary_nodes()}
    assert len(owners) == 3 and all(owners.values()), owners
    assert len(await store.ids(limit=100)) == 40  # and every listing walks them all


async def test_with_a_primary_gone_the_other_buckets_timers_and_outboxes_are_still_claimed(
    own_redis_cluster: RedisClusterNodes, namespace: str
) -> None:
    cluster = cluster_client(own_redis_cluster)
    # Timeouts straight into the timers' index (they come due before a grace of an hour).
    store = RedisSagaStore(cluster, namespace, buckets=64, relay_grace=3600)
    try:
        ids = [f"claimed-{n}" for n in range(30)]
        for saga_id in ids:
            await store.create(started(saga_id), marker=1)
        victim = own_redis_cluster.primary_nodes()[0]
        gone = {i for i in ids if _on(cluster, store, i) == f"127.0.0.1:{victim.port}"}
        assert gone and gone != set(ids)
        victim.kill()  # before any failover: its buckets fail, the others answer
        far = marker_of(T0) + 10**12
        timers = await store.timers.claim(now=far, lease=10, limit=100)
        assert {t.saga_id for _, t in timers} == set(ids) - gone
        outboxes = await store.claim_outboxes(cutoff=far, now=far, limit=100)
        assert set(outboxes) == set(ids) - gone
    finally:
        await cluster.aclose()


def _on(cluster: AnyRedis, store: RedisSagaStore, saga_id: str) -> str:
    assert isinstance(cluster, RedisCluster)
    node = cluster.get_node_from_key(store.keys(saga_id).state)
    assert node is not None
    return str(node.name)


def started(saga_id: str) -> Decision:
    """A new order saga's first decision (its first command, with a timeout timer)."""
    return start_saga(
        ORDER_SAGA,
        saga_id=saga_id,
        customer="ann@example.com",
        saga_input=order_input().model_dump(mode="json"),
        now=T0,
        new_id=lambda: uuid.uuid4().hex,
    )


async def _as_the_earlier_layout(store: RedisSagaStore, saga_id: str) -> None:
    """Store a saga as an engine before layout 2 kept it: its events in a list, its
    applied ids in a set, its outbox in a hash, its timers by id with their data in the
    bucket's timer data."""
    redis, keys = store._redis, store.keys(saga_id)
    bucket = store.keyspace.bucket(saga_id)
    fields = await redis.hgetall(keys.state)
    events = sorted((int(f[2:]), v) for f, v in fields.items() if f.startswith("e:"))
    await redis.rpush(keys.events, *(v for _, v in events))
    for field in fields:
        if field.startswith("a:"):
            await redis.sadd(keys.applied, field[2:])
    for line in fields.get("outbox", "").splitlines():
        command_id, _, _, command, timeout = line.split("\t")
        await redis.hset(keys.outbox, command_id, command)
        if timeout:
            timer = Timer.model_validate_json(timeout)
            await redis.zadd(bucket.timers, {timer.timer_id: marker_of(timer.due_at)})
            await redis.hset(bucket.timer_data, timer.timer_id, timeout)
    await redis.hset(keys.state, "version", fields["v"])
    await redis.hdel(keys.state, *(f for f in fields if f != "state"))


async def test_a_saga_of_the_earlier_layout_reads_and_moves_at_its_next_append(
    store: RedisSagaStore,
) -> None:
    run = Run.start()
    await store.create(run.decisions[0], marker=1)
    first = run.pending
    await _as_the_earlier_layout(store, "saga1")
    redis, keys = store._redis, store.keys("saga1")
    # Read as it is: its outbox, its timer, and its applied start.
    assert [c.envelope for c in await store.outbox("saga1")] == [first.envelope]
    (timeout,) = run.timers
    [(_, claimed)] = await store.timers.claim(now=marker_of(timeout.due_at), lease=1, limit=10)
    assert claimed == timeout
    await store.create(run.decisions[0], marker=2)  # a duplicate, known as one
    assert len(await store.events("saga1")) == 2
    # Its next append moves it into the saga's hash, and is applied there.
    decision = run.succeed()
    answered = first.envelope.message_id
    assert (
        await store.append(
            decision, expected_version=2, applied_id="r1", marker=3, answered=answered
        )
        == "appended"
    )
    assert not await redis.exists(keys.applied, keys.outbox)
    assert await redis.hmget(keys.state, "v", "version") == [str(run.state.version), None]
    # Its events: the first ones in the list, the new ones in its hash.
    assert await redis.llen(keys.events) == 2
    records = [r for d in run.decisions for r in d.records]
    assert await store.events("saga1") == records
    assert [c.envelope for c in await store.outbox("saga1")] == [run.pending.envelope]
    await store.create(run.decisions[0], marker=4)  # the start's id moved too
    assert await store.append(decision, expected_version=4, applied_id="r1", marker=5) == (
        "duplicate"
    )
    # Its earlier timer stays until it comes due (a stale timeout changes nothing) and is
    # forgotten as any other.
    await store.timers.delete(claimed)
    assert await store.timers.count() == 0  # the new command's timeout waits with it
    assert not await redis.exists(store.keyspace.bucket("saga1").timer_data)


async def test_the_relay_takes_an_outbox_of_the_earlier_layout_up(store: RedisSagaStore) -> None:
    run = Run.start()
    await store.create(run.decisions[0], marker=10)
    await _as_the_earlier_layout(store, "saga1")
    assert [c.envelope for c in await store.take_outbox("saga1")] == [run.pending.envelope]
    assert await store._redis.hget(store.keys("saga1").state, "outbox") is None  # untouched


async def test_the_relay_clears_an_outbox_of_the_earlier_layout(store: RedisSagaStore) -> None:
    run = Run.start()
    await store.create(run.decisions[0], marker=10)
    await _as_the_earlier_layout(store, "saga1")
    await store.clear_outboxes([("saga1", [run.pending.envelope.message_id], 10)])
    assert await store.outbox("saga1") == []
    assert await store.outbox_pending() == 0
