"""compose.yaml and the Dockerfile run real `saga` commands with real settings."""

import json
import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


RABBITMQ_NODES = ["rabbitmq-1", "rabbitmq-2", "rabbitmq-3"]
REDIS_NODES = [f"redis-{n}" for n in range(1, 7)]


def in_cluster_profile(name: str) -> dict[str, Any]:
    service = dict(compose()["services"][name])
    assert service["profiles"] == ["cluster"], name
    return service


def test_the_cluster_profile_has_a_rabbitmq_cluster_of_three_nodes_that_find_each_other() -> None:
    peers = re.findall(
        r"classic_config\.nodes\.\d+ = rabbit@(\S+)",
        (ROOT / "deploy/rabbitmq/cluster.conf").read_text(),
    )
    assert peers == RABBITMQ_NODES
    for name in RABBITMQ_NODES:
        node = in_cluster_profile(name)
        assert node["hostname"] == name  # the node is rabbit@<hostname>
        assert (
            "./deploy/rabbitmq/cluster.conf:/etc/rabbitmq/conf.d/20-cluster.conf:ro"
            in (node["volumes"])
        )
        assert f"{name}-data:/var/lib/rabbitmq" in node["volumes"]
        # One cookie for all, and the health check's CLI uses it too.
        cookie = node["environment"]["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"].split()[-1]
        assert cookie in node["healthcheck"]["test"]
    for name in RABBITMQ_NODES[1:]:  # the first starts alone, the others join it
        assert in_cluster_profile(name)["depends_on"]["rabbitmq-1"]["condition"] == (
            "service_healthy"
        )


def test_the_cluster_profile_has_a_redis_cluster_of_three_primaries_with_a_replica_each() -> None:
    for name in REDIS_NODES:
        command = in_cluster_profile(name)["command"]
        assert command[:3] == ["redis-server", "--cluster-enabled", "yes"]
        assert command[command.index("--cluster-announce-hostname") + 1] == name
    create = in_cluster_profile("redis-cluster-create")
    script = create["command"][-1]
    assert "redis-cli --cluster create" in script and "--cluster-replicas 1" in script
    assert "for n in 1 2 3 4 5 6;" in script
    assert set(create["depends_on"]) == set(REDIS_NODES)


@pytest.mark.parametrize("service", APP_SERVICES)
def test_the_cluster_profile_runs_each_process_on_every_node(service: str) -> None:
    plain, clustered = compose()["services"][service], in_cluster_profile(f"{service}-cluster")
    assert clustered["command"] == plain["command"]
    env = clustered["environment"]
    rabbitmq = Settings(rabbitmq_url=env["SAGA_RABBITMQ_URL"]).rabbitmq_url
    assert [urlsplit(url).hostname for url in rabbitmq.split(",")] == RABBITMQ_NODES
    scheme, _, nodes = env["SAGA_REDIS_URL"].partition("://")
    assert scheme == "redis+cluster"
    assert [node.partition(":")[0] for node in nodes.split(",")] == REDIS_NODES
    depends_on = clustered["depends_on"]
    for node in RABBITMQ_NODES:
        assert depends_on[node]["condition"] == "service_healthy"
    assert depends_on["redis-cluster-create"]["condition"] == "service_completed_successfully"


def test_dockerfile_runs_as_non_root() -> None:
    user = runtime_instructions()["USER"].split(":")[0]
    assert user not in {"root", "0"}


def test_dockerfile_has_a_healthcheck() -> None:
    assert "/health" in runtime_instructions()["HEALTHCHECK"]


def test_dockerfile_entrypoint_is_saga() -> None:
    assert json.loads(runtime_instructions()["ENTRYPOINT"]) == ["saga"]


def test_dockerfile_default_command_is_a_saga_command() -> None:
    assert_saga_command(json.loads(runtime_instructions()["CMD"]))
