"""compose.yaml and the Dockerfile run real `saga` commands with real settings."""

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer

from saga.cli.main import app
from saga.cli.up import processes
from saga.extensions import load
from saga.settings import Settings

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
# compose runs what `saga up` runs with every installed extension, a container each
PROCESSES = processes(load())
APP_SERVICES = sorted(PROCESSES)
INFRA_SERVICES = ["rabbitmq", "redis"]


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def runtime_instructions() -> dict[str, str]:
    """The Dockerfile's runtime (last) stage: each instruction -> its last occurrence's arguments."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return {
        line.split(maxsplit=1)[0].upper(): line.split(maxsplit=1)[1] for line in lines[last_from:]
    }


def assert_saga_command(args: list[str]) -> None:
    """Fail unless `saga <args>` parses: a known command with valid options and arguments."""
    group = typer.main.get_command(app)
    name, *rest = args
    assert name in group.commands, f"`saga {name}` is not a command"
    if name == "service":
        assert rest and rest[0] in load().participants
    group.commands[name].make_context(name, rest)  # raises click.UsageError when wrong


def test_compose_has_every_service() -> None:
    assert set(compose()["services"]) >= {*INFRA_SERVICES, *APP_SERVICES}


@pytest.mark.parametrize("service", APP_SERVICES)
def test_compose_command_is_a_saga_command(service: str) -> None:
    assert_saga_command(compose()["services"][service]["command"])


def test_compose_sets_only_saga_variables_settings_reads() -> None:
    names = set(re.findall(r"\bSAGA_[A-Z0-9_]+", (ROOT / "compose.yaml").read_text()))
    assert names
    assert {n.removeprefix("SAGA_").lower() for n in names} <= set(Settings.model_fields)


@pytest.mark.parametrize("service", APP_SERVICES)
def test_compose_app_waits_for_healthy_rabbitmq_and_redis(service: str) -> None:
    depends_on = compose()["services"][service]["depends_on"]
    for infra in INFRA_SERVICES:
        assert depends_on[infra]["condition"] == "service_healthy"


def test_dockerfile_runs_as_non_root() -> None:
    user = runtime_instructions()["USER"].split(":")[0]
    assert user not in {"root", "0"}


def test_dockerfile_has_a_healthcheck() -> None:
    assert "/health" in runtime_instructions()["HEALTHCHECK"]


def test_dockerfile_entrypoint_is_saga() -> None:
    assert json.loads(runtime_instructions()["ENTRYPOINT"]) == ["saga"]


def test_dockerfile_default_command_is_a_saga_command() -> None:
    assert_saga_command(json.loads(runtime_instructions()["CMD"]))
