"""Where a namespace's sagas live in Redis: on one Redis, or spread over the buckets of
a Redis Cluster.

A saga's append is one Lua script, and a script may only touch keys of one hash slot on
a cluster. So on a cluster a namespace's sagas are spread over a fixed number of
buckets, each a hash tag of its own (`{<namespace>/<bucket>}`): a saga's keys, and the
index entries its append writes (the list of all sagas, the active, ended and failed
ones, the outbox index, the timers, a customer's sagas, a definition version's sagas),
live in its bucket. The buckets' slots spread over the cluster's primaries; whatever
walks an index (a listing, the timers, the outbox relay, retention) walks every bucket.

On one Redis there is one bucket, under the names the store always had, so that a
namespace written before buckets existed reads as it did.
"""

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from operator import attrgetter
from typing import Final, TypeAlias, TypeVar

from redis.asyncio.cluster import RedisCluster

from saga.connections import AnyRedis

# How many buckets a namespace's sagas are spread over on a Redis Cluster, unless the
# settings say otherwise (SAGA_REDIS_BUCKETS).
DEFAULT_BUCKETS: Final = 16
T = TypeVar("T")

# A saga's own keys, in the order the append script takes them.
SAGA_PARTS: Final = ("state", "events", "applied", "outbox")


@dataclass(frozen=True)
class Bucket:
    """One bucket of a namespace: its keys share a hash slot."""

    namespace: str
    prefix: str  # every key of the bucket starts with it
    clustered: bool

    @cached_property
    def sagas(self) -> str:
        """Every saga, by when it was created (until retention trims it)."""
        return f"{self.prefix}:sagas"

    @cached_property
    def active(self) -> str:
        """Sagas not yet terminal, by when they were created."""
        return f"{self.prefix}:active"

    @cached_property
    def ended(self) -> str:
        """Sagas that completed or were compensated, by when: trimmed after the retention."""
        return f"{self.prefix}:ended"

    @cached_property
    def failed(self) -> str:
        """Sagas that failed, by when, until a replay takes them up again."""
        return f"{self.prefix}:failed"

    @cached_property
    def outbox_index(self) -> str:
        """Sagas whose outbox may hold commands, by their outbox marker."""
        return f"{self.prefix}:outbox-pending"

    @cached_property
    def timers(self) -> str:
        """Timer ids by due time."""
        return f"{self.prefix}:timers"

    @cached_property
    def timer_data(self) -> str:
        """Each timer's data, by id."""
        return f"{self.prefix}:timer-data"

    @cached_property
    def closed_definitions(self) -> str:
        """Definition versions no saga of the bucket may start on (being deleted, or
        deleted): the fence a start's append checks."""
        return f"{self.prefix}:definitions-closed"

    def customer(self, customer: str) -> str:
        """One customer's sagas, by when they were created."""
        return f"{self.prefix}:customer:{customer.lower()}:sagas"

    def definition_sagas(self, saga_type: str, version: int) -> str:
        """The sagas that may still need one definition version (not completed or
        compensated): while any bucket has one, the version cannot be deleted."""
        return f"{self.prefix}:definition:{saga_type}:{version}:sagas"

    def saga(self, saga_id: str, part: str) -> str:
        """One of a saga's own keys (state, events, applied, outbox)."""
        if self.clustered:
            return f"{self.prefix}:saga:{saga_id}:{part}"
        return f"{self.namespace}:saga:{{{saga_id}}}:{part}"


class Keyspace:
    """The buckets of one namespace: one (named as ever) on one Redis, `buckets` on a
    Redis Cluster."""

    def __init__(self, namespace: str, *, buckets: int | None = None) -> None:
        self.namespace = namespace
        self.clustered = buckets is not None
        if buckets is None:
            self.buckets = [Bucket(namespace, namespace, clustered=False)]
        else:
            self.buckets = [
                Bucket(namespace, f"{namespace}:{{{namespace}/{b}}}", clustered=True)
                for b in range(buckets)
            ]

    def bucket(self, saga_id: str) -> Bucket:
        """The bucket a saga lives in: the same for the saga's whole life."""
        if len(self.buckets) == 1:
            return self.buckets[0]
        return self.buckets[zlib.crc32(saga_id.encode()) % len(self.buckets)]

    def by_bucket(self, items: Iterable[T], saga_id: Callable[[T], str]) -> dict[Bucket, list[T]]:
        """`items` by the bucket of the saga each names (`saga_id`), in their order."""
        if len(self.buckets) == 1:
            listed = list(items)
            return {self.buckets[0]: listed} if listed else {}
        grouped: dict[Bucket, list[T]] = {}
        for item in items:
            grouped.setdefault(self.bucket(saga_id(item)), []).append(item)
        return grouped

    def new_id_in(self, bucket: Bucket, new_id: Callable[[], str]) -> str:
        """A new saga id (from `new_id`) that falls in `bucket`: drawn again until it
        does (once, on one Redis; on average as many times as there are buckets)."""
        while self.bucket(saga_id := new_id()) != bucket:
            pass
        return saga_id

    def shared(self, name: str) -> str:
        """A key of the whole namespace (the definitions, say); on a cluster, every
        such key shares the namespace's own hash tag, so one script may touch them all."""
        if self.clustered:
            return f"{self.namespace}:{{{self.namespace}}}:{name}"
        return f"{self.namespace}:{name}"


def keyspace_of(redis: AnyRedis, namespace: str, *, buckets: int = DEFAULT_BUCKETS) -> Keyspace:
    """The namespace's keyspace on this client's Redis: `buckets` buckets on a Redis
    Cluster, one (named as ever) on one Redis."""
    return Keyspace(namespace, buckets=buckets if isinstance(redis, RedisCluster) else None)


# An index of sagas, by when each was created: its key in each bucket.
Index: TypeAlias = Callable[[Bucket], str]
ALL: Final[Index] = attrgetter("sagas")
ACTIVE: Final[Index] = attrgetter("active")
ENDED: Final[Index] = attrgetter("ended")
FAILED: Final[Index] = attrgetter("failed")


def customer_index(customer: str) -> Index:
    """The index of one customer's sagas."""

    def key(bucket: Bucket) -> str:
        return bucket.customer(customer)

    return key
