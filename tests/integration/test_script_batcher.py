"""Script calls gathered into pipelines, on a real Redis and on fakeredis: each caller gets
its own result or its own error, a burst shares round trips, lost scripts are reloaded."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from fakeredis import FakeAsyncRedis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from saga.scripts import MAX_BATCH, ScriptBatcher
from tests.servers import drop_namespace, redis_or_skip

ECHO = "return {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1}"
INCR = "return redis.call('INCR', KEYS[1])"


@pytest.fixture(params=["redis", "fakeredis"])
async def client(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Redis]:
    if request.param == "fakeredis":
        fake = FakeAsyncRedis(decode_responses=True)
        yield fake
        await fake.aclose()
        return
    redis = await redis_or_skip()
    try:
        yield redis
    finally:
        await drop_namespace(redis, namespace)
        await redis.aclose()


async def test_each_caller_gets_its_own_result_and_a_burst_shares_one_round_trip(
    client: Redis, namespace: str
) -> None:
    batcher = ScriptBatcher(client)
    echo = batcher.register(ECHO)
    await echo(keys=[f"{namespace}:warm"], args=["x", 0])  # loads the script
    before = batcher.round_trips
    results = await asyncio.gather(
        *(echo(keys=[f"{namespace}:{i}"], args=["é", i]) for i in range(50))
    )
    assert results == [[f"{namespace}:{i}", "é", i + 1] for i in range(50)]
    assert batcher.round_trips - before == 1


async def test_one_callers_error_leaves_the_others_results_standing(
    client: Redis, namespace: str
) -> None:
    batcher = ScriptBatcher(client)
    incr = batcher.register(INCR)
    await client.set(f"{namespace}:text", "not a number")
    good, bad, also_good = await asyncio.gather(
        incr(keys=[f"{namespace}:n"]),
        incr(keys=[f"{namespace}:text"]),
        incr(keys=[f"{namespace}:n"]),
        return_exceptions=True,
    )
    assert (good, also_good) == (1, 2)
    assert isinstance(bad, ResponseError)


@pytest.fixture(params=["redis", "fakeredis"])
async def forgetful(request: pytest.FixtureRequest) -> AsyncIterator[Redis]:
    """A Redis whose scripts a test may flush: one of the test's own (never the shared
    one, which other clients use), or fakeredis."""
    if request.param == "fakeredis":
        client = FakeAsyncRedis(decode_responses=True)
    else:
        server = request.getfixturevalue("own_redis")
        client = Redis.from_url(server.url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


async def test_scripts_redis_forgot_are_loaded_again_and_run_once(
    forgetful: Redis, namespace: str
) -> None:
    client = forgetful
    batcher = ScriptBatcher(client)
    incr = batcher.register(INCR)
    assert await incr(keys=[f"{namespace}:n"]) == 1
    await client.script_flush()  # as after a restart of Redis
    assert await asyncio.gather(*(incr(keys=[f"{namespace}:n"]) for _ in range(3))) == [2, 3, 4]
    assert await client.get(f"{namespace}:n") == "4"


async def test_only_the_calls_of_a_script_redis_does_not_know_are_sent_again(
    client: Redis, namespace: str
) -> None:
    batcher = ScriptBatcher(client)
    # The comment makes a script no test before has loaded into this Redis.
    incr, echo = batcher.register(INCR), batcher.register(f"{ECHO} -- {namespace}")
    assert await incr(keys=[f"{namespace}:n"]) == 1  # known to Redis from now on
    before = batcher.round_trips
    # In one pipeline: a script Redis knows (run once) and one it does not (refused,
    # loaded, then sent again on its own).
    counted, echoed = await asyncio.gather(
        incr(keys=[f"{namespace}:n"]), echo(keys=[f"{namespace}:e"], args=["x", 1])
    )
    assert (counted, echoed) == (2, [f"{namespace}:e", "x", 2])
    assert await client.get(f"{namespace}:n") == "2"
    assert batcher.round_trips - before == 2  # the pipeline, then the refused call again


async def test_a_plain_command_shares_the_scripts_pipeline(client: Redis, namespace: str) -> None:
    batcher = ScriptBatcher(client)
    incr, hget = batcher.register(INCR), batcher.plain("HGET")
    await incr(keys=[f"{namespace}:n"])  # loads the script
    await client.hset(f"{namespace}:h", "f", "v")
    before = batcher.round_trips
    counted, got, missing = await asyncio.gather(
        incr(keys=[f"{namespace}:n"]),
        hget(keys=[f"{namespace}:h"], args=["f"]),
        hget(keys=[f"{namespace}:h"], args=["nope"]),
    )
    assert (counted, got, missing) == (2, "v", None)
    assert batcher.round_trips - before == 1


async def test_a_caller_cancelled_while_its_call_waits_gets_nothing_sent(
    client: Redis, namespace: str
) -> None:
    batcher = ScriptBatcher(client)
    incr = batcher.register(INCR)
    call = incr(keys=[f"{namespace}:n"])
    call.cancel()  # before the end of this loop turn, when the pipeline would go
    await asyncio.sleep(0.05)
    assert await client.get(f"{namespace}:n") is None


async def test_a_burst_larger_than_one_pipeline_is_sent_in_pieces(
    client: Redis, namespace: str
) -> None:
    batcher = ScriptBatcher(client)
    incr = batcher.register(INCR)
    await incr(keys=[f"{namespace}:warm"])  # loads the script
    before = batcher.round_trips
    calls = MAX_BATCH * 2 + 10
    results = await asyncio.gather(*(incr(keys=[f"{namespace}:n"]) for _ in range(calls)))
    assert sorted(results) == list(range(1, calls + 1))
    assert await client.get(f"{namespace}:n") == str(calls)
    assert batcher.round_trips - before == 3  # two full pipelines and the rest


async def test_a_server_that_is_away_fails_every_caller_with_a_connection_error() -> None:
    unreachable = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    batcher = ScriptBatcher(unreachable)
    incr = batcher.register(INCR)
    try:
        results = await asyncio.gather(
            *(incr(keys=["k"]) for _ in range(3)), return_exceptions=True
        )
    finally:
        await unreachable.aclose()
    assert all(isinstance(r, RedisConnectionError) for r in results), results
