"""Idempotency keys for the front door: one key, one body, one saga, for 24 hours."""

import hashlib
import json
from dataclasses import dataclass
from typing import Final

from saga.connections import AnyRedis

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

    def __init__(self, redis: AnyRedis, namespace: str, *, ttl: int = KEY_TTL) -> None:
        self._redis = redis
        self._ns = namespace
        self._ttl = ttl

    async def claim(self, customer: str, key: str, body: dict[str, object]) -> Claim:
        """The saga for (customer, key); raises KeyReused if the body differs.

        Atomic by SET NX: of concurrent first uses, one names the saga and the others
        get the same name. The name is the key's own (a digest of the namespace, the
        customer, the key and the body), not a random one: should the record be lost
        (a Redis Cluster failover taking its shard's last write, before the saga's own
        shard confirmed the start), the retry still names the same saga, which then
        stands once, rather than a second saga for one order.
        """
        record_key = f"{self._ns}:idempotency:{customer}:{hashlib.sha256(key.encode()).hexdigest()}"
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        saga_id = hashlib.sha256(
            json.dumps([self._ns, customer, key, digest]).encode()
        ).hexdigest()[:32]
        for _ in range(3):
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
