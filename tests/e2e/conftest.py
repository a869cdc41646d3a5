"""One running system for the end-to-end tests, on a fresh namespace, cleaned up afterwards."""

import asyncio
from collections.abc import Iterator

import pytest

from tests.e2e.system import System, running_system
from tests.servers import rabbitmq_or_skip, redis_or_skip


async def _servers_or_skip() -> None:
    redis = await redis_or_skip()
    await redis.aclose()
    connection = await rabbitmq_or_skip()
    await connection.close()


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    asyncio.run(_servers_or_skip())
    with running_system(tmp_path_factory.mktemp("logs")) as running:
        yield running
