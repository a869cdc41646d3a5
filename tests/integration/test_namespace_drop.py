"""`saga namespace drop`: an operator removes a namespace with everything in it, never one
whose processes still run, and can run it twice; on one Redis and on a Redis Cluster (where
its keys are on every primary)."""

import asyncio
import json
import os
import subprocess
import sys

import aio_pika
import aiormq
import pytest
from pydantic import BaseModel

from saga.connections import AnyRedis
from saga.participant import Context, Participant, ParticipantRuntime
from saga.rabbit import RabbitTransport
from tests.servers import RABBITMQ_URL, url_of

pytestmark = pytest.mark.either_redis


async def saga(redis: AnyRedis, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAGA_REDIS_URL": url_of(redis), "SAGA_RABBITMQ_URL": RABBITMQ_URL}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "saga", "namespace", "drop", namespace, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def queue_exists(amqp: aio_pika.abc.AbstractConnection, name: str) -> bool:
    channel = await amqp.channel()
    try:
        await channel.declare_queue(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return False
    await channel.close()
    return True


class Hold(BaseModel):
    pass


# Keys of as many hash slots, which a cluster's three primaries share.
SPREAD = 30

hotel = Participant("hotel")  # a team's own, named by no definition


@hotel.command(Hold, reply=Hold)
async def hold(command: Hold, ctx: Context) -> Hold:
    return Hold()


async def test_a_namespace_in_use_is_refused_then_dropped_whole_once_its_processes_stop(
    transport: RabbitTransport,
    redis: AnyRedis,
    amqp: aio_pika.abc.AbstractConnection,
    namespace: str,
) -> None:
    topology = transport.topology
    await transport.declare_participants(["stock"])  # a participant of a built-in definition
    await redis.set(f"{namespace}:saga:s1:state", "{}")
    await redis.set(f"{namespace}x:kept", "a neighbour's")  # a namespace sharing its prefix
    spread = [f"{namespace}:spread:{{{i}}}" for i in range(SPREAD)]  # on a cluster: every primary
    await asyncio.gather(*(redis.set(key, "1") for key in spread))
    await ParticipantRuntime(hotel, transport, redis, namespace=namespace).run()
    refused = await saga(redis, namespace, "--yes")
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr == (
        f"saga: error: namespace {namespace!r} is in use: consumers on "
        f"{topology.participant_queue('hotel')} (1); stop its processes first\n"
    )
    assert await redis.exists(f"{namespace}:saga:s1:state") == 1  # nothing deleted

    await transport.stop_consuming()
    dropped = await saga(redis, namespace, "--yes", "--json")
    assert dropped.returncode == 0, dropped.stderr
    # The saga's key, the spread ones, and the namespace's list of participants.
    assert json.loads(dropped.stdout) == {"namespace": namespace, "keys": 2 + SPREAD}
    assert [k async for k in redis.scan_iter(match=f"{namespace}:*")] == []
    for queue in ("hotel", "stock"):
        assert not await queue_exists(amqp, topology.participant_queue(queue)), queue
    assert not await queue_exists(amqp, topology.orchestrator_queue)
    assert await redis.get(f"{namespace}x:kept") == "a neighbour's"
    await redis.delete(f"{namespace}x:kept")

    again = await saga(redis, namespace, "--yes", "--json")  # the operator runs it twice
    assert (again.returncode, json.loads(again.stdout)) == (0, {"namespace": namespace, "keys": 0})


@pytest.mark.parametrize("args", [(), ("--json",)])
async def test_without_yes_nothing_is_dropped(
    redis: AnyRedis, namespace: str, args: tuple[str, ...]
) -> None:
    await redis.set(f"{namespace}:saga:s1:state", "{}")
    result = await saga(redis, namespace, *args)
    assert result.returncode == 2
    assert "add --yes" in result.stderr
    assert await redis.exists(f"{namespace}:saga:s1:state") == 1
