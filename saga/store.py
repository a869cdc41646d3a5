"""The Redis event store: a saga's log, state snapshot, applied ids and outbox, one script per input
(the scripts, and the layout they keep a saga in: saga/store_scripts.py)."""

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any, Final, Literal, cast

import structlog
from pydantic_core import to_json

from contracts.envelope import Envelope
from contracts.topology import Participant
from saga.clock import marker_of
from saga.connections import AnyRedis, once_more
from saga.core.decide import Decision, OutgoingCommand, Timer
from saga.core.events import EventRecord, SagaReplayed, record_from_json
from saga.core.state import TERMINAL, SagaState
from saga.keyspace import (
    ACTIVE,
    ALL,
    DEFAULT_BUCKETS,
    ENDED,
    FAILED,
    SAGA_PARTS,
    Bucket,
    Index,
    Keyspace,
    customer_index,
    keyspace_of,
)
from saga.scripts import ScriptBatcher
from saga.settings import DEFAULT_RELAY_GRACE, DEFAULT_RELAY_INTERVAL
from saga.store_scripts import (
    APPEND,
    CLAIM_OUTBOXES,
    CLAIM_TIMERS,
    CLEAR_OUTBOXES,
    EVENTS,
    MARK_OUTBOX,
    OUTBOX_LINE,
    READ_OUTBOX,
)

log = structlog.get_logger(__name__)


class VersionConflict(Exception):
    """Another writer appended to the saga since its state was read."""

    def __init__(self, saga_id: str, expected: int, actual: int) -> None:
        super().__init__(f"saga {saga_id}: expected version {expected}, found {actual}")
        self.saga_id, self.expected, self.actual = saga_id, expected, actual


class SagaExists(Exception):
    """A saga with this id was already started."""


class NoSuchDefinition(LookupError):
    """The saga's definition version is not applied (or was deleted meanwhile)."""

    def __init__(self, saga_type: str, version: int | None = None) -> None:
        which = saga_type if version is None else f"{saga_type} version {version}"
        super().__init__(f"no saga definition {which}")
        self.saga_type, self.version = saga_type, version


def definition_field(saga_type: str, version: int) -> str:
    """One definition version's field in the applied definitions."""
    return f"{saga_type}:{version}"


class LayoutMismatch(Exception):
    """The namespace's sagas were spread over another number of buckets than this
    process would look in: it would not find them."""


AppendOutcome = Literal["appended", "duplicate"]
# Of an index, at most this many sagas are read for one page of a filtered list.
PAGE_SCAN: Final = 5_000


@dataclass(frozen=True, order=True)
class Position:
    """A saga's place in an index, newest last: its score (when it was created), then its
    id, as Redis orders members of one score."""

    score: float
    saga_id: str

    def text(self) -> str:
        """The position as a cursor in a URL."""
        return f"{self.score!r}~{self.saga_id}"

    @classmethod
    def parse(cls, text: str) -> "Position":
        """The position a cursor names; ValueError if it names none."""
        score, sep, saga_id = text.partition("~")
        if not sep or not saga_id:
            raise ValueError(f"not a cursor: {text!r}")
        return cls(float(score), saga_id)


@dataclass(frozen=True)
class SagaPage:
    """One page of a list of sagas, and where the next one starts (None: no more)."""

    sagas: list[tuple[Position, SagaState]]
    next: Position | None


@dataclass(frozen=True)
class SagaKeys:
    """The keys of one saga; they share a hash tag, so one script can touch them all."""

    state: str
    events: str
    applied: str
    outbox: str

    def all(self) -> list[str]:
        """The four keys, in the order the append script takes them."""
        return [self.state, self.events, self.applied, self.outbox]


class RedisSagaStore:
    """Sagas in Redis under one namespace: on one Redis, or spread over the buckets of a
    Redis Cluster (saga/keyspace.py)."""

    def __init__(
        self,
        redis: AnyRedis,
        namespace: str,
        *,
        buckets: int = DEFAULT_BUCKETS,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
        relay_grace: float = DEFAULT_RELAY_GRACE,
        relay_interval: float = DEFAULT_RELAY_INTERVAL,
    ) -> None:
        self._redis = redis
        self._ns = namespace
        # A command's timeout due this long or more after its decision (the relay's grace
        # and two of its rounds: the relay takes a left outbox up before then) waits on
        # its outbox line (see store_scripts.OUTBOX_LINE).
        self._defer = timeout_defer(relay_grace, relay_interval)
        self.keyspace = keyspace_of(redis, namespace, buckets=buckets)
        # With wait_replicas, whatever may lead to a command being published answers
        # only once that many replicas have it: an append, an outbox marked again by a
        # duplicate before it publishes, and the relay's claim of an outbox.
        scripts = ScriptBatcher(
            redis,
            wait_replicas=wait_replicas,
            wait_timeout_ms=wait_timeout_ms,
            probe_key=self.keyspace.shared("replication-probe"),
        )
        self._append = scripts.register(APPEND, durable=True)
        self._mark_outbox = scripts.register(MARK_OUTBOX, durable=True)
        self._clear_outboxes = scripts.register(CLEAR_OUTBOXES)
        self._events = scripts.register(EVENTS)
        # One script for both: a read answers at once, a take (it writes) once the
        # replicas asked for have its writes.
        self._read_outbox = scripts.register(READ_OUTBOX)
        self._take_outbox = scripts.register(READ_OUTBOX, durable=True)
        self._claim_outboxes = scripts.register(CLAIM_OUTBOXES, durable=True)
        # A saga's state snapshot, read in the same pipeline as the scripts of the moment.
        self._hget = scripts.plain("HGET")
        self._zmscore = scripts.plain("ZMSCORE")
        self.timers = TimerStore(scripts, self.keyspace)

    async def check_layout(self) -> None:
        """On a Redis Cluster, make sure the namespace's sagas are where this process
        looks: the first process records the number of buckets, and a process that counts
        otherwise raises LayoutMismatch (a mistyped SAGA_REDIS_BUCKETS would lose every
        saga from sight). Nothing to check on one Redis."""
        if not self.keyspace.clustered:
            return
        key, count = self.keyspace.shared("buckets"), len(self.keyspace.buckets)
        await self._redis.set(key, count, nx=True)
        recorded = int(await self._redis.get(key) or count)
        if recorded != count:
            raise LayoutMismatch(
                f"namespace {self._ns!r} keeps its sagas in {recorded} buckets, and this "
                f"process would look in {count}: set SAGA_REDIS_BUCKETS={recorded}"
            )

    def keys(self, saga_id: str) -> SagaKeys:
        """The keys of one saga."""
        bucket = self.keyspace.bucket(saga_id)
        return SagaKeys(*(bucket.saga(saga_id, part) for part in SAGA_PARTS))

    async def create(self, decision: Decision, *, marker: int, applied: bool = False) -> bool:
        """Store a new saga's first events and commands, and index it; raises SagaExists,
        or NoSuchDefinition if `applied` (its definition version was applied, not built
        in) and that version is not there (any more).

        Safe to repeat (a retried call whose first answer was lost, or two front doors
        given one idempotency key): the start is recorded as applied, so a second
        attempt finds it done and returns False.
        """
        state = decision.state
        try:
            # Safe to repeat, so made once more on a connection that turns out dead (after
            # a Redis restart) rather than failing the start.
            outcome = await once_more(
                self._redis,
                lambda: self._append_with(
                    decision,
                    expected_version=0,
                    applied_id=f"start:{state.saga_id}",
                    marker=marker,
                    created=repr(state.created_at.timestamp()),
                    definition=definition_field(state.saga_type, state.definition_version)
                    if applied
                    else None,
                ),
            )
        except VersionConflict:
            raise SagaExists(state.saga_id) from None
        return outcome == "appended"

    async def append(
        self,
        decision: Decision,
        *,
        expected_version: int,
        applied_id: str | None,
        marker: int,
        record_applied: bool = True,
        answered: str | None = None,
    ) -> AppendOutcome:
        """Append a decision atomically, in one script: events, state, applied id, outbox,
        timers and the outbox marker (under `marker`), or nothing. An input whose
        `applied_id` is recorded already is a duplicate; `record_applied=False` checks
        that without recording it. `answered`: the command the input replies to, which
        leaves the outbox (published, since answered) in the same script."""
        return await self._append_with(
            decision,
            expected_version=expected_version,
            applied_id=applied_id,
            marker=marker,
            record_applied=record_applied,
            answered=answered,
        )

    async def _append_with(
        self,
        decision: Decision,
        *,
        expected_version: int,
        applied_id: str | None,
        marker: int,
        created: str | None = None,
        definition: str | None = None,
        record_applied: bool = True,
        answered: str | None = None,
    ) -> AppendOutcome:
        state = decision.state
        args = append_arguments(
            decision,
            defer=self._defer,
            expected_version=expected_version,
            applied_id=applied_id,
            record_applied=record_applied,
            marker=marker,
            created=created,
            definition=definition,
            answered=answered,
        )
        keys = self._append_keys(state)
        status, version = await self._append(keys=keys, args=args)
        status = _text(status)
        if status == "conflict":
            raise VersionConflict(state.saga_id, expected_version, int(version))
        if status == "no_definition":
            raise NoSuchDefinition(state.saga_type, state.definition_version)
        return "duplicate" if status == "duplicate" else "appended"

    def _append_keys(self, state: SagaState) -> list[str]:
        """The append script's KEYS, in the order it names them: all in the saga's bucket."""
        bucket = self.keyspace.bucket(state.saga_id)
        return [
            *self.keys(state.saga_id).all(),
            bucket.active,
            bucket.ended,
            bucket.outbox_index,
            bucket.timers,
            bucket.sagas,
            bucket.customer(state.customer),
            bucket.definition_sagas(state.saga_type, state.definition_version),
            bucket.closed_definitions,
            bucket.failed,
            # On one Redis (one slot), the applied definitions too: a version deleted
            # before the buckets' fence existed (by an earlier engine) has no fence.
            *(() if self.keyspace.clustered else (self.keyspace.shared("definitions"),)),
        ]

    async def load(self, saga_id: str) -> SagaState | None:
        """The saga's current state (its snapshot), or None if there is no such saga.

        The orchestrator reads a state for the first reply of every saga it did not
        start itself: through the script batcher, the read shares its pipeline rather
        than check out a connection of its own (a tenth of the cost under load)."""
        raw = await self._hget(keys=[self.keys(saga_id).state], args=["state"])
        return None if raw is None else SagaState.model_validate_json(raw)

    async def load_many(self, saga_ids: list[str]) -> list[SagaState]:
        """The states of several sagas in one round trip; missing ones are left out."""
        raws = await self.raw_states(saga_ids)
        return [SagaState.model_validate_json(r) for r in raws if r is not None]

    async def raw_states(self, saga_ids: list[str]) -> list[str | None]:
        """The stored state JSON of each saga (None where there is none), one round trip.
        Not through the script batcher: the sweeps read hundreds at a time, which would
        queue ahead of the appends."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for saga_id in saga_ids:
                pipe.hget(self.keys(saga_id).state, "state")
            return list(await pipe.execute())

    async def events(self, saga_id: str) -> list[EventRecord]:
        """The saga's whole log, oldest first."""
        return [record_from_json(r) for r in await self.raw_events(saga_id)]

    async def raw_events(self, saga_id: str) -> list[str]:
        """The saga's whole log, oldest first, each event's JSON as stored."""
        keys = self.keys(saga_id)
        return [_text(r) for r in await self._events(keys=[keys.state, keys.events])]

    async def find(
        self, *, status: str | None = None, customer: str | None = None, limit: int = 50
    ) -> list[SagaState]:
        """Sagas newest first, only those in `status` if given (of one customer's, if
        given): from the smallest index that holds them all."""
        if customer is not None:
            index = customer_index(customer)
        else:
            index = {"running": ACTIVE, "compensating": ACTIVE, "failed": FAILED}.get(
                status or "", ALL
            )
        found: list[SagaState] = []
        before: Position | None = None
        while len(found) < limit:
            page = await self.page(
                lambda s: status in (None, s.status), index=index, before=before, limit=limit
            )
            found += [state for _, state in page.sagas]
            if page.next is None:
                break
            before = page.next
        return found[:limit]

    async def page(
        self,
        keep: Callable[[SagaState], bool],
        *,
        index: Index = ALL,
        before: Position | None = None,
        limit: int,
        scan: int = PAGE_SCAN,
    ) -> SagaPage:
        """Sagas of an index (all sagas by default) that `keep` accepts, newest first,
        strictly older than `before`: at most `limit`, and where the next page starts.

        A cursor, not an offset: sagas started meanwhile do not shift the pages. At most
        `scan` sagas are read for one page; a page that filters out that many ends early,
        its `next` saying where to go on."""
        found: list[tuple[Position, SagaState]] = []
        read, last = 0, before
        while len(found) <= limit and read < scan:
            batch = min(200, scan - read)
            positions = await self._older(index, last, batch)
            read += len(positions)
            states = {s.saga_id: s for s in await self.load_many([p.saga_id for p in positions])}
            for position in positions:
                last = position
                state = states.get(position.saga_id)
                if state is not None and keep(state):
                    found.append((position, state))
            if len(positions) < batch:
                return SagaPage(found[:limit], found[limit - 1][0] if len(found) > limit else None)
        if len(found) > limit:
            return SagaPage(found[:limit], found[limit - 1][0])
        return SagaPage(found, last)

    async def _older(self, index: Index, before: Position | None, count: int) -> list[Position]:
        """The `count` newest positions of an index, across its buckets, strictly older
        than `before` (all, if None), newest first."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for bucket in self.keyspace.buckets:
                key = index(bucket)
                if before is None:
                    pipe.zrevrangebyscore(key, "+inf", "-inf", start=0, num=count, withscores=True)
                    continue
                # Older: a lower score, or the same score and a lower id (as Redis
                # orders the members of one score).
                top = f"({before.score!r}"
                pipe.zrevrangebyscore(key, top, "-inf", start=0, num=count, withscores=True)
                pipe.zrangebyscore(key, before.score, before.score, withscores=True)
            replies = await pipe.execute()
        positions = [Position(float(score), str(i)) for reply in replies for i, score in reply]
        if before is not None:
            positions = [p for p in positions if p < before]
        return sorted(set(positions), reverse=True)[:count]

    async def newer(
        self,
        keep: Callable[[SagaState], bool],
        *,
        index: Index = ALL,
        after: Position,
        limit: int,
        scan: int = PAGE_SCAN,
    ) -> list[tuple[Position, SagaState]]:
        """Sagas of an index that `keep` accepts, strictly newer than `after`, newest
        first: the `limit` newest of those started since, of the `scan` newest read (for
        a list that stays live)."""
        entries = await self._scored(index, "+inf", after.score, count=scan)
        positions = [p for p in entries if after < p][:scan]
        states = {s.saga_id: s for s in await self.load_many([p.saga_id for p in positions])}
        kept = [(p, states[p.saga_id]) for p in positions if p.saga_id in states]
        return [(p, s) for p, s in kept if keep(s)][:limit]

    async def _scored(
        self, index: Index, top: float | str, bottom: float | str, *, count: int
    ) -> list[Position]:
        """The `count` newest members of an index from score `top` down to `bottom`,
        across its buckets, newest first."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for bucket in self.keyspace.buckets:
                pipe.zrevrangebyscore(
                    index(bucket), top, bottom, start=0, num=count, withscores=True
                )
            replies = await pipe.execute()
        positions = {Position(float(score), str(i)) for reply in replies for i, score in reply}
        return sorted(positions, reverse=True)[:count]

    async def recent(
        self, *, since: float, customer: str | None = None, limit: int = PAGE_SCAN
    ) -> list[SagaState]:
        """The sagas that started at or after `since` (epoch seconds), those that ended
        since (completed, compensated or failed), and those still running: at most
        `limit` of each kind.
        A customer's: only theirs (from their index, of those started since)."""
        if customer is not None:
            found = await self._scored(customer_index(customer), "+inf", since, count=limit)
        else:
            found = [
                *await self._scored(ALL, "+inf", since, count=limit),
                *await self._scored(ENDED, "+inf", since, count=limit),
                *await self._scored(FAILED, "+inf", since, count=limit),
                *await self._scored(ACTIVE, "+inf", "-inf", count=limit),
            ]
        return await self.load_many(list(dict.fromkeys(p.saga_id for p in found)))

    async def ids(self, index: Index = ALL, *, limit: int) -> list[str]:
        """The ids of the `limit` newest sagas of an index (all sagas by default)."""
        return [p.saga_id for p in await self._scored(index, "+inf", "-inf", count=limit)]

    async def _each_bucket(self, command: Callable[[Any, Bucket], object]) -> list[Any]:
        return await each_bucket(self._redis, self.keyspace, command)

    async def on_version(self, saga_type: str, version: int) -> int:
        """How many sagas still run on one definition version (not completed or
        compensated: running, compensating, or failed and awaiting a replay)."""
        counts = await self._each_bucket(
            lambda pipe, b: pipe.scard(b.definition_sagas(saga_type, version))
        )
        return sum(int(c) for c in counts)

    async def active_scores(self, saga_ids: list[str]) -> list[float | None]:
        """For each saga, its score in the active index, or None once it has ended."""
        # One ZMSCORE a bucket, not a ZSCORE a saga: the bench asks this of every saga
        # in flight twenty times a second.
        # Through the script batcher: packed in C, where a pipeline of the client packs
        # each of a few hundred ids in Python.
        by_bucket = self.keyspace.by_bucket(saga_ids, str)
        replies = await asyncio.gather(
            *(self._zmscore(keys=[bucket.active], args=ids) for bucket, ids in by_bucket.items())
        )
        scores = {
            saga_id: None if score is None else float(score)
            for ids, reply in zip(by_bucket.values(), replies, strict=True)
            for saga_id, score in zip(ids, reply, strict=True)
        }
        return [scores[saga_id] for saga_id in saga_ids]

    async def active_count(self) -> int:
        """How many sagas are not yet terminal (as the active index says)."""
        return sum(int(c) for c in await self._each_bucket(lambda pipe, b: pipe.zcard(b.active)))

    async def oldest_active(self, limit: int) -> list[SagaState]:
        """The states of the `limit` sagas longest in the active index, oldest first (one
        may have ended since: the index is tidied after)."""
        replies = await self._each_bucket(
            lambda pipe, b: pipe.zrange(b.active, 0, limit - 1, withscores=True)
        )
        oldest = sorted(Position(float(s), str(i)) for reply in replies for i, s in reply)
        return await self.load_many([p.saga_id for p in oldest[:limit]])

    async def forget_finished(self, *, now: float, limit: int = 200) -> int:
        """Drop from the active index the sagas that ended (a crash came between their
        last append and the removal) or never began (a crash before their first append,
        a minute or more ago), walking the whole index; returns how many."""
        gone = 0
        for bucket in self.keyspace.buckets:
            batch: list[tuple[str, float]] = []
            async for entry in self._redis.zscan_iter(bucket.active, count=limit):
                batch.append(cast(tuple[str, float], entry))
                if len(batch) >= limit:
                    gone += await self._forget(bucket, batch, now)
                    batch.clear()
            gone += await self._forget(bucket, batch, now)
        return gone

    async def _forget(self, bucket: Bucket, entries: list[tuple[str, float]], now: float) -> int:
        # Only each saga's status is wanted: read from its snapshot's JSON, not the whole
        # state validated (this walks every saga in flight, every few seconds).
        raws = await self.raw_states([str(i) for i, _ in entries])
        gone = [
            str(saga_id)
            for (saga_id, created), raw in zip(entries, raws, strict=True)
            if (json.loads(raw)["status"] in TERMINAL if raw is not None else created < now - 60)
        ]
        if gone:
            await self._redis.zrem(bucket.active, *gone)
        return len(gone)

    # --- retention -----------------------------------------------------------------

    async def ended_before(self, cutoff: float, limit: int) -> list[str]:
        """Sagas that completed or were compensated before `cutoff` (epoch seconds), the
        longest ended first."""
        replies = await self._each_bucket(
            lambda pipe, b: pipe.zrangebyscore(
                b.ended, "-inf", cutoff, start=0, num=limit, withscores=True
            )
        )
        ended = sorted(Position(float(s), str(i)) for reply in replies for i, s in reply)
        return [p.saga_id for p in ended[:limit]]

    async def trim(self, saga_ids: list[str]) -> None:
        """Delete sagas for good: their log, state, applied ids, outbox and index entries."""
        states = {s.saga_id: s for s in await self.load_many(saga_ids)}
        async with self._redis.pipeline(transaction=False) as pipe:
            for saga_id in saga_ids:
                bucket = self.keyspace.bucket(saga_id)
                pipe.delete(*self.keys(saga_id).all())
                if saga_id in states:
                    pipe.zrem(bucket.customer(states[saga_id].customer), saga_id)
                pipe.zrem(bucket.sagas, saga_id)
                pipe.zrem(bucket.ended, saga_id)
            await pipe.execute()

    # --- outbox ---------------------------------------------------------------------

    async def mark_outbox(self, saga_id: str, marker: int) -> None:
        """Note that the saga's outbox may hold commands (before they are stored, or
        before a duplicate publishes them again: with wait_replicas, that waits until
        the replicas have the outbox)."""
        bucket = self.keyspace.bucket(saga_id)
        await self._mark_outbox(keys=[bucket.outbox_index], args=[marker, saga_id])

    async def outbox(self, saga_id: str) -> list[OutgoingCommand]:
        """The commands in the saga's outbox, not yet known to be published."""
        return [_command_from_json(raw) for raw in await self._raw_outbox(saga_id)]

    async def take_outbox(self, saga_id: str) -> list[OutgoingCommand]:
        """The commands in the saga's outbox, to publish again: they waited past the
        relay's grace (or a duplicate found them), so their timeouts join the timers'
        index, each at its own due time."""
        return [_command_from_json(raw) for raw in await self._raw_outbox(saga_id, "take")]

    async def _raw_outbox(
        self, saga_id: str, how: Literal["read", "take"] = "read"
    ) -> list[bytes | str]:
        keys, bucket = self.keys(saga_id), self.keyspace.bucket(saga_id)
        script = self._take_outbox if how == "take" else self._read_outbox
        return list(
            await script(keys=[keys.state, keys.outbox, bucket.timers], args=[how, saga_id])
        )

    async def clear_outboxes(self, batch: list[tuple[str, list[str], int]]) -> None:
        """Remove published commands from several sagas' outboxes (id, command ids,
        marker), each saga's outbox marker with its last command; one script a bucket,
        in one round trip (per node)."""
        by_bucket = self.keyspace.by_bucket(batch, itemgetter(0))
        await asyncio.gather(
            *(
                self._clear_outboxes(
                    keys=[
                        bucket.outbox_index,
                        bucket.timers,
                        *(key for saga_id, _, _ in sagas for key in self._outbox_keys(saga_id)),
                    ],
                    args=[to_json([[saga_id, str(marker), ids] for saga_id, ids, marker in sagas])],
                )
                for bucket, sagas in by_bucket.items()
            )
        )

    def _outbox_keys(self, saga_id: str) -> tuple[str, str]:
        keys = self.keys(saga_id)
        return keys.state, keys.outbox

    async def outbox_pending(self) -> int:
        """How many sagas' outboxes may hold unpublished commands."""
        counts = await self._each_bucket(lambda pipe, b: pipe.zcard(b.outbox_index))
        return sum(int(c) for c in counts)

    async def outbox_oldest(self, limit: int = 100) -> datetime | None:
        """When the oldest command still in an outbox was decided, looking at the `limit`
        outboxes marked longest ago (the relay marks an outbox anew on each claim, so
        the mark alone does not tell how long a command has waited)."""
        replies = await self._each_bucket(lambda pipe, b: pipe.zrange(b.outbox_index, 0, limit - 1))
        saga_ids = [str(i) for reply in replies for i in reply]
        if not saga_ids:
            return None
        outboxes = await asyncio.gather(*(self._raw_outbox(saga_id) for saga_id in saga_ids))
        sent = [_command_from_json(raw).envelope.sent_at for box in outboxes for raw in box]
        return min(sent, default=None)

    async def claim_outboxes(self, *, cutoff: int, now: int, limit: int) -> list[str]:
        """Claim the sagas whose outbox may hold commands left since before `cutoff`
        (up to `limit` of each bucket): each is marked anew as of `now` (the marker to
        clear it under), so claims with a cutoff before `now` pass it by."""
        claimed = await from_every_bucket(
            self._claim_outboxes(keys=[bucket.outbox_index], args=[cutoff, now, limit])
            for bucket in self.keyspace.buckets
        )
        return [_text(s) for some in claimed for s in some]


async def each_bucket(
    redis: AnyRedis, keyspace: Keyspace, command: Callable[[Any, Bucket], object]
) -> list[Any]:
    """One command per bucket, in one pipeline (one round trip per node); their replies,
    bucket by bucket."""
    async with redis.pipeline(transaction=False) as pipe:
        for bucket in keyspace.buckets:
            command(pipe, bucket)
        return list(await pipe.execute())


async def from_every_bucket(claims: Iterable[Awaitable[list[Any]]]) -> list[list[Any]]:
    """What each bucket's claim took, of the buckets that answered. What a claim takes
    is hidden from others until its lease ends, so the claims that went through are
    kept even when others failed (a node away, failing over): those fail alone, logged,
    and the round goes on with the rest; only when every bucket failed does the first
    error stand."""
    answers = await asyncio.gather(*claims, return_exceptions=True)
    failed = [a for a in answers if isinstance(a, BaseException)]
    if failed and len(failed) == len(answers):
        raise failed[0]
    if failed:
        log.warning("buckets unreachable", buckets=len(failed), error=repr(failed[0]))
    return [a for a in answers if not isinstance(a, BaseException)]


def timeout_defer(
    relay_grace: float = DEFAULT_RELAY_GRACE, relay_interval: float = DEFAULT_RELAY_INTERVAL
) -> int:
    """The least time (in microseconds) from a decision to a command's timeout for that
    timeout to wait on the command's line of the outbox rather than in the timer index."""
    return int((relay_grace + 2 * relay_interval) * 1_000_000)


def append_arguments(
    decision: Decision,
    *,
    defer: int,
    expected_version: int,
    applied_id: str | None,
    record_applied: bool,
    marker: int,
    created: str | None,
    definition: str | None,
    answered: str | None,
) -> list[str | bytes]:
    """The append script's ARGV: its fields by name, as JSON, then the JSON texts it
    keeps (see store_scripts.APPEND)."""
    state = decision.state
    fields: dict[str, Any] = {
        "expected_version": expected_version,
        "version": state.version,
        "saga": state.saga_id,
        "marker": str(marker),
        "record_applied": record_applied,
        "events": len(decision.records),
    }
    # A timeout due `defer` or more after the decision waits on its command's line of the
    # outbox (see OUTBOX_LINE); the other timers go into the index.
    sent = {c.envelope.message_id for c in decision.commands}
    decided = marker_of(state.updated_at)
    waits = {
        t.command_id: t
        for t in decision.timers
        if t.kind == "timeout" and t.command_id in sent and marker_of(t.due_at) - decided >= defer
    }
    waiting = {t.timer_id for t in waits.values()}
    indexed = [t for t in decision.timers if t.timer_id not in waiting]
    fields["first"] = decision.records[0].seq if decision.records else 0
    fields["commands"] = len(decision.commands)
    fields["timers"] = [{"due": str(marker_of(t.due_at)), "id": t.timer_id} for t in indexed]
    fields["cancelled"] = list(decision.cancelled_timers)
    optional = [
        ("applied_id", applied_id),
        ("end", _end_of(state)),
        ("failed", repr(state.updated_at.timestamp()) if state.status == "failed" else None),
        # A replay takes a failed saga up again: running, by when it was created.
        (
            "replayed",
            repr(state.created_at.timestamp())
            if any(isinstance(r.event, SagaReplayed) for r in decision.records)
            else None,
        ),
        ("created", created),
        ("definition", definition),
        ("answered", answered),
    ]
    fields.update((name, value) for name, value in optional if value)  # absent: none
    return [
        # Compact, text as UTF-8 (Lua's cjson reads it); pydantic's encoder, in Rust,
        # takes a quarter of the standard library's time.
        to_json(fields),
        # Defaults left out: smaller, and a snapshot of a saga that never used a field
        # added later still reads in the version before it.
        state.model_dump_json(exclude_defaults=True),
        *(r.model_dump_json() for r in decision.records),
        *(_outbox_line(c, waits.get(c.envelope.message_id)) for c in decision.commands),
        *(t.model_dump_json() for t in indexed),
    ]


def _end_of(state: SagaState) -> str | None:
    """The append script's `end`: None while running, ended for good, or ended at a time."""
    if not state.terminal:
        return None
    if state.status == "failed":
        return "kept"  # for an operator to look at and replay; never trimmed
    return repr(state.updated_at.timestamp())


def _outbox_line(command: OutgoingCommand, timeout: Timer | None) -> str:
    """A command's line of the outbox, with the timeout that waits with it."""
    if timeout is None:
        due, timer, data = "", "", ""
    else:
        due, timer = str(marker_of(timeout.due_at)), timeout.timer_id
        data = timeout.model_dump_json()
    return OUTBOX_LINE.format(
        id=command.envelope.message_id,
        due=due,
        timer=timer,
        command=_command_json(command),
        timeout=data,
    )


def _command_json(command: OutgoingCommand) -> str:
    # The envelope's JSON from pydantic's own serialiser, spliced in: a third of the
    # cost of dumping it to a dict and that dict to JSON.
    participant = json.dumps(command.participant)
    return f'{{"participant": {participant}, "envelope": {command.envelope.model_dump_json()}}}'


def _command_from_json(raw: str | bytes) -> OutgoingCommand:
    data = json.loads(raw)
    participant: Participant = data["participant"]
    return OutgoingCommand(
        participant=participant, envelope=Envelope.model_validate(data["envelope"])
    )


class TimerStore:
    """Due timers of every saga of a namespace: in each bucket, `<saga>/<timer id>` by
    due time; each timer's data in its saga's hash (a timer of the earlier layout: its
    id, its data in the bucket's timer data)."""

    def __init__(self, scripts: ScriptBatcher, keyspace: Keyspace) -> None:
        self._redis = scripts.redis
        self._claim = scripts.register(CLAIM_TIMERS)
        self._keyspace = keyspace

    def _hash(self, saga_id: str) -> str:
        return self._keyspace.bucket(saga_id).saga(saga_id, "state")

    async def claim(self, *, now: int, lease: int, limit: int) -> list[tuple[str, Timer]]:
        """Timers due by `now` (microseconds), each hidden from others for `lease` (up to
        `limit` of each bucket)."""
        claimed = await from_every_bucket(
            self._claim(keys=[b.timers, b.timer_data], args=[now, now + lease, limit])
            for b in self._keyspace.buckets
        )
        members = [_text(raw[i]) for raw in claimed for i in range(0, len(raw), 2)]
        data = [raw[i + 1] for raw in claimed for i in range(0, len(raw), 2)]
        # The data of those in their sagas' hashes, in one round trip (per node).
        in_hashes = [i for i, found in enumerate(data) if not found]
        async with self._redis.pipeline(transaction=False) as pipe:
            for i in in_hashes:
                saga_id, _, timer_id = members[i].rpartition("/")
                pipe.hget(self._hash(saga_id), f"t:{timer_id}")
            for i, found in zip(in_hashes, await pipe.execute(), strict=True):
                data[i] = found
        # Those without data were cancelled since the claim read them, or their sagas
        # trimmed: they leave the index.
        gone = [member for member, found in zip(members, data, strict=True) if not found]
        if gone:
            async with self._redis.pipeline(transaction=False) as pipe:
                for member in gone:
                    bucket = self._keyspace.bucket(member.rpartition("/")[0])
                    pipe.zrem(bucket.timers, member)
                await pipe.execute()
        return [
            (member, Timer.model_validate_json(found))
            for member, found in zip(members, data, strict=True)
            if found
        ]

    async def delete(self, timer: Timer) -> None:
        """Forget a timer that has been dealt with (of either layout)."""
        saga_id, timer_id = timer.saga_id, timer.timer_id
        bucket = self._keyspace.bucket(saga_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(bucket.timers, f"{saga_id}/{timer_id}", timer_id)
            pipe.hdel(self._hash(saga_id), f"t:{timer_id}")
            pipe.hdel(bucket.timer_data, timer_id)
            await pipe.execute()

    async def count(self) -> int:
        """How many timers are waiting."""
        counts = await each_bucket(self._redis, self._keyspace, lambda p, b: p.zcard(b.timers))
        return sum(int(c) for c in counts)

    async def due(self, *, now: int) -> int:
        """How many timers are due by `now` (microseconds) and not taken (a taken one is
        hidden until its lease ends)."""
        counts = await each_bucket(
            self._redis, self._keyspace, lambda p, b: p.zcount(b.timers, "-inf", now)
        )
        return sum(int(c) for c in counts)


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
