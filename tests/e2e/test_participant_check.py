"""`saga participant check` against the running system: the shop's services and a foreign
participant pass it out of the box, beside live sagas and without disturbing them; a
broken participant fails it with the case named; an absent server or a silent
participant is one line."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.envelope import CHECK_SAGA_PREFIX
from tests.courier import DELIVERY, Courier, running
from tests.e2e.shop import Shop, open_shop
from tests.e2e.system import System
from tests.waiting import eventually_sync


@pytest.fixture(scope="module")
def delivery(system: System, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The courier's saga type, applied (so its queue is the namespace's, and removed with it)."""
    path = tmp_path_factory.mktemp("definitions") / "delivery.json"
    path.write_text(json.dumps(DELIVERY))
    system.cli("definitions", "apply", str(path))


@pytest.fixture
def shop(system: System) -> Shop:
    return open_shop(system)


def check(system: System, *args: str, **settings: str) -> tuple[int, dict[str, Any]]:
    """`saga participant check ... --json`: its exit code and report."""
    result = system.cli("participant", "check", *args, "--json", check=False, **settings)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def outcomes(report: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for case in report["cases"]:
        found.setdefault(case["outcome"], []).append(f"{case['case']} {case['command']}")
    return found


def ignored_by_the_orchestrator(system: System, run: str) -> int:
    """How many replies of a run of the check the orchestrator acked and ignored."""
    prefix = f"{CHECK_SAGA_PREFIX}{run}."
    count = 0
    for raw in (system.logs / "orchestrator.log").read_text().splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if line.get("event") == "reply to the conformance check ignored" and str(
            line.get("saga_id")
        ).startswith(prefix):
            count += 1
    return count


def undisturbed(system: System, report: dict[str, Any]) -> None:
    """Every reply of the run reached the orchestrator too, which acked and ignored it; no
    dead letter of the run is left."""
    eventually_sync(
        lambda: ignored_by_the_orchestrator(system, report["run"]),
        until=lambda n: n >= report["replies"] > 0,
        what="the orchestrator ignoring every reply of the check",
    )
    mark = f"{CHECK_SAGA_PREFIX}{report['run']}."
    letters = system.cli_json("dlq", "list", "--limit", "10000")
    assert [x for x in letters if mark in x["preview"] or mark in (x["saga_id"] or "")] == []


@pytest.mark.parametrize("name", ["stock", "payment", "order"])
def test_each_shop_service_passes_out_of_the_box(system: System, name: str) -> None:
    code, report = check(system, name)
    assert code == 0 and report["passed"], outcomes(report)
    assert list(outcomes(report)) == ["passed"], outcomes(report)
    undisturbed(system, report)


def test_the_shop_given_real_data_passes_and_is_left_as_it_was_but_for_records(
    system: System, shop: Shop, tmp_path: Path
) -> None:
    apple = shop.products["apple"]
    before = shop.stock("apple")
    code, report = check(
        system,
        "stock",
        "--payload",
        f"ReserveStock={json.dumps({'items': [{'product_id': apple, 'quantity': 1}]})}",
        "--payload",
        f'ReleaseStock={{"product_ids": ["{apple}"]}}',
        "--payload",
        f'ConfirmStock={{"product_ids": ["{apple}"]}}',
    )
    assert code == 0 and list(outcomes(report)) == ["passed"], outcomes(report)
    assert shop.stock("apple") == before
    undisturbed(system, report)
    samples = tmp_path / "samples.yaml"
    samples.write_text(
        f"ChargePayment: {{customer: {shop.customer}, amount: '5.00'}}\n"
        f"RefundPayment: {{customer: {shop.customer}}}\n"
    )
    balance = shop.account()["balance"]
    code, report = check(system, "payment", "--samples", str(samples))
    assert code == 0 and list(outcomes(report)) == ["passed"], outcomes(report)
    account = shop.account()
    assert account["balance"] == balance
    # What stays: the charges it made and their refunds, in the ledger.
    kinds = [e["kind"] for e in account["ledger"] if e["saga_id"].startswith(CHECK_SAGA_PREFIX)]
    assert kinds and kinds.count("charge") == kinds.count("refund")
    undisturbed(system, report)


def test_a_foreign_participant_passes_with_its_commands_from_its_definition(
    system: System, delivery: None
) -> None:
    with running(Courier(system.namespace)):
        code, report = check(system, "courier")
    assert code == 0 and list(outcomes(report)) == ["passed"], outcomes(report)
    commands = {c["command"] for c in report["cases"]}
    assert {"BookCourier", "CancelCourier", "Insure", "Uninsure"} <= commands
    undisturbed(system, report)


class Markerless(Courier):
    """Forgets a compensation that came first: the late command goes through."""

    def refuses_late(self, unit: str) -> bool:
        return False


def test_a_broken_participant_fails_with_its_case_in_the_table_and_exit_1(
    system: System, delivery: None
) -> None:
    with running(Markerless(system.namespace)):
        result = system.cli(
            "participant",
            "check",
            "courier",
            "--step",
            "Insure:Uninsure",
            "--payload",
            'Insure={"value": 5}',
            "--payload",
            "Uninsure={}",
            check=False,
        )
    assert result.returncode == 1, result.stderr
    rows = [line.split("│") for line in result.stdout.splitlines() if "│" in line]
    cells = {(r[1].strip(), r[2].strip()): r[3].strip() for r in rows if r[1].strip()}
    assert cells[("compensation_first", "Insure")] == "failed"
    assert [k for k, v in cells.items() if v == "failed"] == [("compensation_first", "Insure")]
    assert "courier: 8 passed, 1 failed, 0 inconclusive" in result.stdout


@pytest.fixture
def paused_stock(system: System) -> Iterator[None]:
    system.pause("stock")
    try:
        yield
    finally:
        system.resume("stock")


def test_a_participant_that_does_not_answer_is_one_line(system: System, paused_stock: None) -> None:
    result = system.cli("participant", "check", "stock", "--timeout", "1", check=False)
    assert result.returncode == 1
    assert result.stderr == (
        f"saga: error: stock did not answer within 1s: is it running, in namespace "
        f"{system.namespace!r}?\n"
    )


def test_rabbitmq_away_is_one_line(system: System) -> None:
    away = "amqp://guest:guest@127.0.0.1:1/"
    result = system.cli("participant", "check", "stock", check=False, SAGA_RABBITMQ_URL=away)
    assert result.returncode == 1
    assert result.stderr.startswith(
        "saga: error: cannot reach RabbitMQ (amqp://guest:***@127.0.0.1:1/)"
    )
    assert len(result.stderr.splitlines()) == 1
