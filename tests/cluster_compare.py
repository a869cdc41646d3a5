"""`python -m tests.cluster_compare [ROUNDS] [SAGAS]`: `saga bench --processes` in rounds
that alternate one Redis (with a replica) and a 3-primary Redis Cluster (a replica each),
each with and without SAGA_REDIS_WAIT_REPLICAS=1; servers of its own on free loopback
ports (append-only files, synced on every write), stopped at the end. One JSON line per
run on stdout (docs/performance.md, "On a Redis Cluster")."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.nodes import RedisClusterNodes, RedisServer


def main(rounds: int, sagas: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="cluster-compare-"))
    single = RedisServer(root / "single")
    replica = RedisServer(root / "single-replica", replica_of=single)
    cluster = RedisClusterNodes(root / "cluster")
    try:
        single.start()
        replica.start()
        cluster.start()
        wait = {"SAGA_REDIS_WAIT_REPLICAS": "1"}
        cases = [
            ("one Redis", single.url, {}),
            ("one Redis, wait for 1 replica", single.url, wait),
            ("Redis Cluster", cluster.url, {}),
            ("Redis Cluster, wait for 1 replica", cluster.url, wait),
        ]
        for round_ in range(1, rounds + 1):
            for case, url, settings in cases:
                print(json.dumps(_bench(case, round_, url, settings, sagas)), flush=True)
    finally:
        cluster.stop()
        replica.stop()
        single.stop()


def _bench(case: str, round_: int, url: str, settings: dict[str, str], sagas: int) -> object:
    load = os.getloadavg()[0]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "saga",
            "bench",
            "--processes",
            "--sagas",
            str(sagas),
            "--concurrency",
            "200",
            "--json",
        ],
        env={**os.environ, "SAGA_REDIS_URL": url, **settings},
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    return {"case": case, "round": round_, "load1": load, **json.loads(run.stdout)}


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 3,
        int(sys.argv[2]) if len(sys.argv) > 2 else 2000,
    )
