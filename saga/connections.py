"""Connections to Redis, built from settings; nothing connects at import."""

from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeAlias, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from saga.settings import Settings

log = structlog.get_logger(__name__)

# Redis's errors that mean it is away or cannot take the work for now, not that the work
# is wrong: a replica that is not (or no longer) the primary (READONLY), a full memory
# (OOM), a cluster resharding or failing over (TRYAGAIN, CLUSTERDOWN, MASTERDOWN, a
# slot still MOVED after the map was read again, a slot no node serves for now);
# loading its data (LOADING) is a connection error.
REDIS_OUTAGES: Final = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    OutOfMemoryError,
    TryAgainError,
    ClusterDownError,
    AskError,
    SlotNotCoveredError,
)


# A client of one Redis, or of a Redis Cluster (which routes each command to the node
# that holds its key's slot).
AnyRedis: TypeAlias = Redis | RedisCluster


def redis_client(settings: Settings) -> AnyRedis:
    """A Redis client that reconnects on its next command and answers str, not bytes;
    for a `redis+cluster://` URL, a Redis Cluster client.

    A single Redis's pool is bounded and blocking: under a burst, callers wait (up to
    10 s) for a connection instead of failing with "too many connections".
    """
    if is_cluster_url(settings.redis_url):
        return _cluster_client(settings)
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


def is_cluster_url(url: str) -> bool:
    """Whether a Redis URL names a Redis Cluster."""
    return url.partition("://")[0] in ("redis+cluster", "rediss+cluster")


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The nodes a `redis+cluster://HOST:PORT[,HOST:PORT...]` URL names; ValueError
    naming what is wrong."""
    netloc = url.partition("://")[2].partition("/")[0].partition("?")[0].rpartition("@")[2]
    nodes = []
    for address in netloc.split(","):
        host, colon, port = address.strip().rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"{address.strip()!r} is not HOST:PORT; a Redis Cluster URL names one or"
                " more nodes, as in redis+cluster://10.0.0.1:6379,10.0.0.2:6379"
            )
        nodes.append((host.strip("[]"), int(port)))
    return nodes


class _ClusterClient(RedisCluster):
    """redis-py's cluster client, which reads the slot map before its first command.

    redis-py reads it lazily, inside the first command: commands sent together on a fresh
    client judge themselves before the map is read, see no node for their key's slot,
    and go to a random primary as if keyless; the MOVED that answers makes the client
    read the map again and replace its nodes, closing connections the other commands are
    reading from ("Connection closed by server"). Every caller waits here, on the
    client's own lock, until the map is read once.
    """

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self._initialize:
            await self.initialize()
        return await super().execute_command(*args, **kwargs)


async def reread_slot_map(cluster: RedisCluster, failed: str | None = None) -> None:
    """Read a cluster's slot map again (a node failed, a slot moved), asking `failed`,
    the node that failed if one did, last. Only the map: not the whole client, whose
    own re-reading asks one node (perhaps the one away) for the commands' table too,
    and closes every connection if that fails."""
    await cluster.nodes_manager.initialize(last_failed_node_name=failed)
    if failed is not None and cluster.get_default_node().name == failed:
        cluster.replace_default_node()


def _cluster_client(settings: Settings) -> RedisCluster:
    url = settings.redis_url
    parts = urlsplit(url)
    userinfo = url.partition("://")[2].partition("/")[0].rpartition("@")[0]
    username, _, password = userinfo.partition(":")
    options = parse_qs(parts.query)
    return _ClusterClient(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster_nodes(url)],
        username=unquote(username) or None,
        password=unquote(password) or None,
        ssl=url.startswith("rediss+"),
        ssl_ca_certs=options.get("ssl_ca_certs", [None])[0],
        decode_responses=True,
        max_connections=settings.redis_max_connections,
        socket_connect_timeout=5,
        socket_timeout=10,
        health_check_interval=15,
        # As for one Redis: no retries of a command in the client. A slot that moved
        # (a failover) is followed (MOVED, ASK) by the cluster client itself.
        retry=Retry(NoBackoff(), retries=0),
    )


T = TypeVar("T")


async def once_more(redis: AnyRedis, call: Callable[[], Awaitable[T]]) -> T:
    """`call`, made once more if its connection turns out dead. After a Redis restart
    every idle pooled connection fails on its first use (redis-py does not notice the
    server closed them), so they are all dropped and the call is made on a fresh one.
    Only for calls that may run twice: reads, and writes idempotent by their own keys
    (the client itself retries nothing)."""
    try:
        return await call()
    except RedisConnectionError:
        if isinstance(redis, Redis):
            await redis.connection_pool.disconnect(inuse_connections=False)
        # (A cluster client drops a failed node's connection, and reads the slot map
        # again, itself.)
        return await call()


async def replicas_per_primary(redis: AnyRedis) -> dict[str, int]:
    """How many replicas each primary has connected now (one primary, or each of a
    cluster's), by address."""
    if isinstance(redis, RedisCluster):
        infos = await redis.info("replication", target_nodes=RedisCluster.PRIMARIES)
        return {str(node): int(info.get("connected_slaves", 0)) for node, info in infos.items()}
    info = await redis.info("replication")
    kwargs = redis.connection_pool.connection_kwargs
    address = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
    return {str(address): int(info.get("connected_slaves", 0))}


async def warn_if_replicas_short(redis: AnyRedis, wanted: int) -> dict[str, int]:
    """With SAGA_REDIS_WAIT_REPLICAS=N (`wanted`), the primaries with fewer than N
    replicas connected now, each logged as a warning: their appends would wait and fail
    until replicas come. Nothing to check when N is 0."""
    if wanted == 0:
        return {}
    replicas = await replicas_per_primary(redis)
    short = {address: count for address, count in sorted(replicas.items()) if count < wanted}
    for address, count in short.items():
        log.warning(
            "fewer Redis replicas than SAGA_REDIS_WAIT_REPLICAS: appends there wait and fail",
            primary=address,
            replicas=count,
            wanted=wanted,
        )
    return short


async def ping_redis(settings: Settings) -> None:
    """Reach Redis once; a redis ConnectionError or TimeoutError says it cannot be reached."""
    redis = redis_client(settings)
    try:
        await redis.ping()
    finally:
        await redis.aclose()
