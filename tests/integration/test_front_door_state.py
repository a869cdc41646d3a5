"""What the front door and the console keep in Redis, on one Redis and on a Redis Cluster:
a customer's rate (a token bucket script), idempotency keys, console sessions."""

import asyncio
import time

import pytest
from redis.crc import key_slot

from saga.api.auth import Caller, SignedIn
from saga.api.idempotency import IdempotencyKeys, KeyReused
from saga.api.limits import Rate, RateLimited, RateLimiter
from saga.connections import AnyRedis
from saga.console.sessions import SessionStore
from saga.keyspace import keyspace_of
from saga.store import RedisSagaStore

pytestmark = pytest.mark.either_redis


async def test_a_customer_s_burst_is_bounded_and_another_customer_has_their_own(
    redis: AnyRedis, namespace: str
) -> None:
    limiter = RateLimiter(redis, namespace, Rate(3, 3600))
    for _ in range(3):
        await limiter.take("ann@example.com")
    with pytest.raises(RateLimited) as refused:
        await limiter.take("ann@example.com")
    assert 0 < refused.value.retry_after <= 1200  # one token comes back every 1200 s
    await limiter.take("bob@example.com")


async def test_concurrent_first_uses_of_a_key_name_one_saga_and_another_body_is_refused(
    redis: AnyRedis, namespace: str
) -> None:
    keys = IdempotencyKeys(redis, keyspace_of(redis, namespace))
    body: dict[str, object] = {"items": [{"product_id": "p1", "quantity": 1}]}
    claims = await asyncio.gather(*(keys.claim("ann", "k1", body) for _ in range(5)))
    assert len({c.saga_id for c in claims}) == 1
    assert sum(c.first for c in claims) == 1
    with pytest.raises(KeyReused):
        await keys.claim("ann", "k1", {"items": []})
    other = await keys.claim("bob", "k1", body)  # a key is the customer's own
    assert other.first and other.saga_id != claims[0].saga_id


async def test_a_key_s_record_is_in_the_bucket_of_the_saga_it_names(
    redis: AnyRedis, namespace: str
) -> None:
    keyspace = keyspace_of(redis, namespace)
    keys = IdempotencyKeys(redis, keyspace)
    body: dict[str, object] = {"items": [{"product_id": "p1", "quantity": 1}]}
    for n in range(20):
        claim = await keys.claim("ann", f"k{n}", body)
        (record,) = [k async for k in redis.scan_iter(match=f"{namespace}:*idempotency:*")]
        saga_key = RedisSagaStore(redis, namespace).keys(claim.saga_id).state
        if keyspace.clustered:  # one slot: one shard, the record written first
            assert key_slot(record.encode()) == key_slot(saga_key.encode())
        else:  # named as it always was
            assert record.startswith(f"{namespace}:idempotency:ann:")
        await redis.delete(record)


async def test_a_session_lives_as_long_as_its_token_and_ends_at_sign_out(
    redis: AnyRedis, namespace: str
) -> None:
    sessions = SessionStore(redis, namespace)
    now = time.time()
    signed_in = SignedIn("a-token", Caller("ann@example.com", ("customer",)), now + 600)
    session, ttl = await sessions.open(signed_in, now=now)
    assert 599 <= ttl <= 600
    assert await sessions.get(session.session_id) == session
    await sessions.close(session.session_id)
    assert await sessions.get(session.session_id) is None
