"""What the front door and the console keep in Redis, on one Redis and on a Redis Cluster:
a customer's rate (a token bucket script), idempotency keys, console sessions."""

import asyncio
import time

import pytest

from saga.api.auth import Caller, SignedIn
from saga.api.idempotency import IdempotencyKeys, KeyReused
from saga.api.limits import Rate, RateLimited, RateLimiter
from saga.connections import AnyRedis
from saga.console.sessions import SessionStore

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
    keys = IdempotencyKeys(redis, namespace)
    body: dict[str, object] = {"items": [{"product_id": "p1", "quantity": 1}]}
    claims = await asyncio.gather(*(keys.claim("ann", "k1", body) for _ in range(5)))
    assert len({c.saga_id for c in claims}) == 1
    assert sum(c.first for c in claims) == 1
    with pytest.raises(KeyReused):
        await keys.claim("ann", "k1", {"items": []})
    other = await keys.claim("bob", "k1", body)  # a key is the customer's own
    assert other.first and other.saga_id != claims[0].saga_id


async def test_a_key_whose_record_was_lost_still_names_the_same_saga(
    redis: AnyRedis, namespace: str
) -> None:
    keys = IdempotencyKeys(redis, namespace)
    body: dict[str, object] = {"items": [{"product_id": "p1", "quantity": 1}]}
    first = await keys.claim("ann", "k1", body)
    # A failover took the record (it lives on another shard than the saga it names).
    assert await namespace_keys(redis, namespace, "idempotency") == 1
    await redis.delete(*[k async for k in redis.scan_iter(match=f"{namespace}:idempotency:*")])
    again = await keys.claim("ann", "k1", body)
    assert again.first and again.saga_id == first.saga_id  # one saga for one order
    with pytest.raises(KeyReused):  # and the record is back
        await keys.claim("ann", "k1", {"items": []})


async def namespace_keys(redis: AnyRedis, namespace: str, kind: str) -> int:
    return len([k async for k in redis.scan_iter(match=f"{namespace}:{kind}:*")])


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
