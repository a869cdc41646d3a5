"""Idempotency keys for the front door: one key, one body, one saga, for 24 hours."""

import hashlib
import json
from dataclasses import dataclass
from typing import Final

from saga.clock import new_id
from saga.connections import AnyRedis
from saga.keyspace import Keyspace

KEY_TTL: Final = 24 * 3600
MAX_KEY_LENGTH: Final = 255


class KeyReused(Exception):
    """The key was used before with a different body."""


@dataclass(frozen=True)
class Claim:
    """The saga a key stands for; `first` is False when the key was seen before."""

    saga_id: str
    first: bool


class IdempotencyKeys:
    """A customer's keys in Redis; the first use of a key names the saga it stands for."""

    def __init__(self, redis: AnyRedis, keyspace: Keyspace, *, ttl: int = KEY_TTL) -> None:
        self._redis = redis
        self._keyspace = keyspace
        self._ttl = ttl

    async def claim(self, customer: str, key: str, body: dict[str, object]) -> Claim:
        """The saga for (customer, key); raises KeyReused if the body differs.

        Atomic by SET NX: of concurrent first uses, one names the saga and the others
        get the same name. The record lives in a bucket of the namespace chosen from the
        customer and the key, and the saga it names in the same bucket (its id is drawn
        until it falls there): on a Redis Cluster both are on one shard, written in that
        order, so a replica that has the saga's start has the record too, and a failover
        cannot lose the record of a saga it kept (a retry would then start a second
        saga for one order).
        """
        bucket = self._keyspace.bucket(f"{customer}\n{key}")
        sha = hashlib.sha256(key.encode()).hexdigest()
        record_key = f"{bucket.prefix}:idempotency:{customer}:{sha}"
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        for _ in range(3):
            saga_id = self._keyspace.new_id_in(bucket, new_id)
            record = json.dumps({"body": digest, "saga_id": saga_id})
            if await self._redis.set(record_key, record, nx=True, ex=self._ttl):
                return Claim(saga_id, first=True)
            raw = await self._redis.get(record_key)
            if raw is None:
                continue  # expired between the two calls: claim it afresh
            existing = json.loads(raw)
            if existing["body"] != digest:
                raise KeyReused(f"Idempotency-Key {key!r} was used with a different body")
            return Claim(str(existing["saga_id"]), first=False)
        raise RuntimeError("could not claim an idempotency key")  # pragma: no cover
