"""Retention on a running system: a finished saga is gone after SAGA_RETENTION, its order stays."""

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.shop import open_shop
from tests.e2e.system import System, running_system
from tests.servers import redis_or_skip


@pytest.fixture(scope="module")
def brief(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    logs: Path = tmp_path_factory.mktemp("logs")
    with running_system(logs, settings={"SAGA_RETENTION": "3s"}) as system:
        yield system


async def ttl_of_keys(namespace: str, pattern: str) -> list[int]:
    redis = await redis_or_skip()
    try:
        return [await redis.ttl(k) async for k in redis.scan_iter(match=f"{namespace}:{pattern}")]
    finally:
        await redis.aclose()


def test_a_finished_saga_is_trimmed_after_the_retention_and_its_order_kept(
    brief: System,
) -> None:
    shop = open_shop(brief)
    key = f"order-{uuid.uuid4().hex}"
    response = httpx.post(
        f"{brief.api}/orders/create_order",
        json=shop.body([("apple", 1)]),
        headers={"Authorization": f"Bearer {shop.token}", "Idempotency-Key": key},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    saga_id = response.json()["saga_id"]
    assert brief.wait_terminal(shop.token, saga_id)["status"] == "completed"
    # The Idempotency-Key does not outlive the saga it names.
    (key_ttl,) = asyncio.run(ttl_of_keys(brief.namespace, "idempotency:*"))
    assert 0 < key_ttl <= 3
    # The services remember the commands they answered for as long, then forget them.
    assert all(0 < t <= 3 for t in asyncio.run(ttl_of_keys(brief.namespace, "*:handled:*")))

    deadline = time.monotonic() + 20
    while brief.saga(shop.token, saga_id).status_code != 404:
        assert time.monotonic() < deadline, "the saga was not trimmed"
        time.sleep(0.2)
    assert saga_id not in [s["saga_id"] for s in brief.cli_json("list")]
    assert "no saga" in brief.cli("show", saga_id, check=False).stderr
    orders = [o for o in brief.cli_json("order", "list") if o["saga_id"] == saga_id]
    assert [o["status"] for o in orders] == ["created"]
