"""`saga bench` measures the real path, compares with the baseline, and leaves nothing."""

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.servers import RABBITMQ_URL, REDIS_URL, rabbitmq_or_skip, redis_or_skip


async def keys_of(redis: Redis, namespace: str) -> list[str]:
    return [k async for k in redis.scan_iter(match=f"{namespace}:*", count=1000)]


def bench(*args: str, command: str = "bench") -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "saga", command, *args, "--json"],
        env={**os.environ, "SAGA_REDIS_URL": REDIS_URL, "SAGA_RABBITMQ_URL": RABBITMQ_URL},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.mark.parametrize(
    "args",
    [
        ("--sagas", "40", "--concurrency", "10", "--baseline"),
        ("--sagas", "40", "--concurrency", "10", "--processes", "--orchestrators", "2"),
    ],
    ids=["in-process-with-baseline", "two-orchestrator-processes"],
)
async def test_the_bench_runs_every_saga_and_cleans_up(args: tuple[str, ...]) -> None:
    redis = await redis_or_skip()
    await (await rabbitmq_or_skip()).close()
    try:
        report = bench(*args)
        assert report["namespace"].startswith("bench-")
        assert (report["completed"], report["failed"]) == (40, 0)
        assert report["sagas_per_s"] > 0 and 0 < report["p50_ms"] <= report["p99_ms"]
        assert report["messages_per_s"] > 0 and report["redis_commands_per_saga"] > 0
        samples = report["memory"]
        assert samples[0]["sagas_done"] == 0 and samples[-1]["sagas_done"] == 40
        assert all(s["redis_mb"] > 0 and s["rss_mb"]["bench"] > 0 for s in samples)
        if "--baseline" in args:
            floor = report["baseline"]
            assert (floor["completed"], floor["failed"]) == (40, 0)
            assert report["throughput_ratio"] == pytest.approx(
                report["sagas_per_s"] / floor["sagas_per_s"], abs=0.01
            )
        else:
            assert report["baseline"] is None
            assert {"orchestrator1", "orchestrator2", "stock", "payment", "order"} <= set(
                report["cpu_seconds"]
            )
        assert await keys_of(redis, report["namespace"]) == []  # its namespace is gone
    finally:
        await redis.aclose()


def test_two_orchestrators_need_processes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "saga", "bench", "--orchestrators", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--orchestrators above 1 needs --processes" in result.stderr


async def test_the_flood_bench_counts_what_kept_working_and_cleans_up() -> None:
    redis = await redis_or_skip()
    await (await rabbitmq_or_skip()).close()
    try:
        report = bench("--attempts", "60", "--concurrency", "5", command="bench-flood")
        answers, bystander = report["answers"], report["bystander_sign_ins"]
        assert sum(answers.values()) == 60 and set(answers) <= {"401", "429", "503"}
        # Refused before hashing: throttled (429) or no free hashing slot (503).
        assert answers.get("401", 0) < 60
        # Only the wrong passwords answered 401 and the bystander's sign-ins were hashed.
        assert report["hashes_computed"] == answers.get("401", 0) + bystander.get("200", 0)
        assert report["verify_failed"] == report["health_failed"] == 0
        assert report["orders_completed"] == report["orders_placed"] > 0
        assert await keys_of(redis, report["namespace"]) == []
    finally:
        await redis.aclose()
