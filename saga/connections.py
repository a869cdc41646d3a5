"""Connections to Redis, built from settings; nothing connects at import."""

from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ClusterDownError, OutOfMemoryError, ReadOnlyError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from saga.settings import Settings

# Redis's errors that mean it is away or cannot take the work for now, not that the work
# is wrong: a replica that is not (or no longer) the primary (READONLY), a full memory
# (OOM), a cluster resharding or failing over (TRYAGAIN, CLUSTERDOWN, MASTERDOWN);
# loading its data (LOADING) is a connection error.
REDIS_OUTAGES: Final = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    OutOfMemoryError,
    TryAgainError,
    ClusterDownError,
)


def redis_client(settings: Settings) -> "Redis":
    """A Redis client that reconnects on its next command and answers str, not bytes.

    Its pool is bounded and blocking: under a burst, callers wait (up to 10 s) for a
    connection instead of failing with "too many connections".
    """
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=10,
        decode_responses=True,
        socket_connect_timeout=5,
        socket_timeout=10,
        health_check_interval=15,
        # No retries in the client: a command sent twice is not always harmless (a
        # deposit), and every caller here retries whole idempotent steps itself.
        retry=Retry(NoBackoff(), retries=0),
    )
    return Redis.from_pool(pool)  # the client owns the pool: closing it closes the pool


T = TypeVar("T")


async def once_more(redis: "Redis", call: Callable[[], Awaitable[T]]) -> T:
    """`call`, made once more if its connection turns out dead. After a Redis restart
    every idle pooled connection fails on its first use (redis-py does not notice the
    server closed them), so they are all dropped and the call is made on a fresh one.
    Only for calls that may run twice: reads, and writes idempotent by their own keys
    (the client itself retries nothing)."""
    try:
        return await call()
    except RedisConnectionError:
        await redis.connection_pool.disconnect(inuse_connections=False)
        return await call()


async def ping_redis(settings: Settings) -> None:
    """Reach Redis once; a redis ConnectionError or TimeoutError says it cannot be reached."""
    redis = redis_client(settings)
    try:
        await redis.ping()
    finally:
        await redis.aclose()
