"""One running system for the end-to-end tests, on a fresh namespace, cleaned up afterwards."""

import asyncio
from collections.abc import Iterator

import pytest

from tests.e2e.system import System
from tests.servers import forget_namespace, fresh_namespace, rabbitmq_or_skip, redis_or_skip


async def _servers_or_skip() -> None:
    redis = await redis_or_skip()
    await redis.aclose()
    connection = await rabbitmq_or_skip()
    await connection.close()


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    asyncio.run(_servers_or_skip())
    running = System(namespace=fresh_namespace(), logs=tmp_path_factory.mktemp("logs"))
    try:
        running.start()
        yield running
    finally:
        running.stop()
        forget_namespace(running.namespace)
