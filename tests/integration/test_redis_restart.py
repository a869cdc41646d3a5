"""Right after a Redis restart every pooled connection is dead: what may run twice is made
once more on a fresh one, so nothing a client sees fails while Redis is up again."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from saga.api.limits import Rate, RateLimiter
from saga.auth.app import create_auth_app
from saga.auth.users import UserStore
from saga.connections import redis_client
from saga.orchestrator import SagaStarter
from saga.outbox import Dispatcher
from saga.rabbit import RabbitTransport
from saga.registry import DefinitionRegistry
from saga.settings import Settings
from saga.store import RedisSagaStore
from services.messages import CATALOGUE
from tests.nodes import RedisServer
from tests.shop_saga import BUILTINS, ORDER_SAGA, is_builtin
from tests.unit.sagas import order_input


@pytest.fixture
async def client(own_redis: RedisServer, namespace: str) -> AsyncIterator[Redis]:
    """A client as every process makes one, on a Redis of the test's own."""
    redis = redis_client(Settings(redis_url=own_redis.url, namespace=namespace))
    try:
        yield redis
    finally:
        await redis.aclose()


async def restart_with_connections_pooled(redis: Redis, server: RedisServer) -> None:
    await asyncio.gather(*(redis.blpop(["nothing"], 0.2) for _ in range(4)))
    server.kill()
    await asyncio.to_thread(server.start)


async def test_sagas_start(
    client: Redis, own_redis: RedisServer, namespace: str, transport: RabbitTransport
) -> None:
    store = RedisSagaStore(client, namespace)
    starter = SagaStarter(store, Dispatcher(store, transport), builtin=is_builtin)
    await restart_with_connections_pooled(client, own_redis)
    states = await asyncio.gather(
        *(
            starter.start(ORDER_SAGA, customer="ann@example.com", saga_input=order_input())
            for _ in range(5)
        )
    )
    assert [s.status for s in states] == ["running"] * 5


async def test_the_rate_limit_and_the_registry_answer(
    client: Redis, own_redis: RedisServer, namespace: str
) -> None:
    limiter = RateLimiter(client, namespace, Rate(count=100, period=1))
    registry = DefinitionRegistry(client, namespace, builtins=BUILTINS, catalogue=CATALOGUE)
    await restart_with_connections_pooled(client, own_redis)
    await asyncio.gather(*(limiter.take(f"c{n}@example.com") for n in range(3)))
    entries = await asyncio.gather(*(registry.entry("order") for _ in range(3)))
    assert all(e is not None for e in entries)


async def test_tokens_are_verified(client: Redis, own_redis: RedisServer, namespace: str) -> None:
    await UserStore(client, namespace).add("ann@example.com", "correct-horse", None)
    app = create_auth_app(Settings(namespace=namespace), redis=client)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://auth") as auth,
    ):
        signed_in = await auth.post(
            "/auth/token", json={"email": "ann@example.com", "password": "correct-horse"}
        )
        token = signed_in.json()["access_token"]
        await restart_with_connections_pooled(client, own_redis)
        verified = await asyncio.gather(
            *(auth.post("/auth/verify", json={"token": token}) for _ in range(3))
        )
    assert [r.status_code for r in verified] == [200] * 3
