"""The layering holds: the core does no I/O and knows nothing of the shell, the wire
imports nothing of ours, the engine nothing of the shop or the bench, and the transport
port no client library (the contracts are in pyproject.toml; CI runs the same check)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_import_contract_is_kept() -> None:
    result = subprocess.run(
        [Path(sys.executable).with_name("lint-imports"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
