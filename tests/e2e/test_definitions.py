"""Saga types as data, end to end: registered over HTTP and the CLI, started by type, and
a new version applied while sagas of the old one are in flight."""

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.shop import Shop, open_shop
from tests.e2e.system import System
from tests.shop_saga import BUILTINS
from tests.waiting import eventually_sync

ORDER_DOCUMENT: dict[str, Any] = BUILTINS["order"][1].model_dump(mode="json")


def gift(version: int, *, pay: bool = True, roles: list[str] | None = None) -> dict[str, Any]:
    """The order saga as another type, `gift`; when `pay` is false, without payment and
    without confirming the sale (the reservation stays)."""
    steps = json.loads(json.dumps(ORDER_DOCUMENT["steps"]))
    if not pay:
        steps[1]["when"] = "false"  # take_payment: always skipped
        steps[3]["when"] = "false"  # confirm_stock too
    return ORDER_DOCUMENT | {
        "name": "gift",
        "version": version,
        "steps": steps,
        "roles": roles or ["customer"],
    }


def post(system: System, token: str, path: str, body: Any) -> httpx.Response:
    return httpx.post(
        f"{system.api}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def gift_input(shop: Shop) -> dict[str, Any]:
    order = shop.body([("apple", 1)])
    return {
        "customer": shop.customer,
        "vendor": order["vendor_email"],
        "delivery_address": order["delivery_address"],
        "items": [{"product_id": shop.products["apple"], "quantity": 1}],
        "payment_method": "Credit Card",
    }


@pytest.fixture
def admin(system: System) -> Shop:
    return open_shop(system, role="admin")


def test_a_new_version_changes_only_sagas_started_after_it(system: System, admin: Shop) -> None:
    shop = open_shop(system)
    assert post(system, admin.token, "/definitions", gift(1)).status_code == 201
    # Version 1 sagas wait at take_payment while the payment service is frozen.
    system.pause("payment")
    try:
        old = [
            post(system, shop.token, "/sagas", {"type": "gift", "input": gift_input(shop)})
            for _ in range(3)
        ]
        assert [r.status_code for r in old] == [202] * 3, [r.text for r in old]
        old_ids = [r.json()["saga_id"] for r in old]
        for saga_id in old_ids:
            eventually_sync(
                lambda s=saga_id: system.saga(shop.token, s).json()["steps"][1]["status"],
                until=lambda status: status == "running",
                what="take_payment running",
            )
        assert post(system, admin.token, "/definitions", gift(2, pay=False)).status_code == 201
        new = [
            post(system, shop.token, "/sagas", {"type": "gift", "input": gift_input(shop)})
            for _ in range(2)
        ]
        new_ids = [r.json()["saga_id"] for r in new]
        for saga_id in new_ids:  # version 2 needs no payment: done while payment sleeps
            saga = system.wait_terminal(shop.token, saga_id)
            assert saga["status"] == "completed"
            statuses = [s["status"] for s in saga["steps"]]
            assert statuses == ["succeeded", "skipped", "succeeded", "skipped"]
    finally:
        system.resume("payment")
    for saga_id in old_ids:  # past the new version's change, they keep their own
        saga = system.wait_terminal(shop.token, saga_id, within=30)
        assert saga["status"] == "completed"
        assert [s["status"] for s in saga["steps"]] == ["succeeded"] * 4
    shown = {s["saga_id"]: s for s in system.cli_json("list", "--limit", "1000")}
    assert {shown[s]["definition_version"] for s in old_ids} == {1}
    assert {shown[s]["definition_version"] for s in new_ids} == {2}
    charged = {e["saga_id"] for e in shop.account()["ledger"] if e["kind"] == "charge"}
    assert charged == set(old_ids)  # only version 1 took payment
    apple = shop.stock("apple")
    assert (apple["sold"], apple["reserved"]) == (3, 2)


def test_who_may_register_and_start_what(system: System, admin: Shop) -> None:
    shop = open_shop(system)
    refused = post(system, shop.token, "/definitions", gift(1))
    assert refused.status_code == 403
    staff_only = gift(1, roles=["admin"]) | {"name": "restock"}
    assert post(system, admin.token, "/definitions", staff_only).status_code == 201
    assert post(system, admin.token, "/definitions", staff_only).status_code == 200  # unchanged
    changed = staff_only | {"description": "another text"}
    conflict = post(system, admin.token, "/definitions", changed)
    assert conflict.status_code == 409 and "new version" in conflict.json()["detail"]
    body = {"type": "restock", "input": gift_input(shop)}
    assert post(system, shop.token, "/sagas", body).status_code == 403
    assert post(system, admin.token, "/sagas", body | {"input": {}}).status_code == 422
    missing = post(system, shop.token, "/sagas", {"type": "nothing", "input": {}})
    assert missing.status_code == 404
    listed = {d["name"]: d for d in system.api_get(shop.token, "/definitions").json()}
    assert listed["restock"]["can_start"] is False and listed["order"]["can_start"] is True
    shown = system.api_get(shop.token, "/definitions/restock?version=1").json()
    assert shown["roles"] == ["admin"]


def problems(response: httpx.Response) -> list[tuple[tuple[Any, ...], str]]:
    """A 422's problems as (place, message), after checking their shape."""
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail, detail
    return [(tuple(p["loc"]), p["msg"]) for p in detail]


def test_a_document_that_is_not_a_definition_is_refused_with_every_place(
    system: System, admin: Shop, tmp_path: Path
) -> None:
    broken = gift(1) | {"name": "broken", "version": 0}
    broken["steps"] = [dict(broken["steps"][0], participant="Not A Name"), *broken["steps"][1:]]
    refused = problems(post(system, admin.token, "/definitions", broken))
    assert [loc for loc, _ in refused] == [("body", "version"), ("body", "steps", 0, "participant")]
    steps = json.loads(json.dumps(gift(1)["steps"]))
    steps[0]["action"]["input"] = {"items": "{{steps.create_order.result.items}}"}
    steps[1]["when"] = "payment_method !="
    reads_later = gift(1) | {"name": "broken", "steps": steps}
    refused = problems(post(system, admin.token, "/definitions", reads_later))
    assert [loc for loc, _ in refused] == [
        ("body", "steps", 0, "action", "input", "items"),
        ("body", "steps", 1, "when"),
    ]
    assert "not an earlier step" in refused[0][1] and "condition" in refused[1][1]
    document = tmp_path / "broken.json"
    document.write_text(json.dumps(reads_later))
    applied = system.cli("definitions", "apply", str(document), check=False)
    assert applied.returncode == 1
    assert len(applied.stderr.strip().splitlines()) == 1, applied.stderr
    assert "steps.0.action.input.items: " in applied.stderr, applied.stderr
    assert "steps.1.when: " in applied.stderr, applied.stderr


def test_every_problem_of_a_saga_s_input_is_answered_with_its_path(
    system: System, admin: Shop
) -> None:
    shop = open_shop(system)
    bad = gift_input(shop) | {
        "items": [{"product_id": "p1", "quantity": 0}, {"product_id": "p1", "quantity": 2_000_000}],
        "payment_method": "IOU",
    }
    del bad["vendor"]
    refused = problems(post(system, admin.token, "/sagas", {"type": "order", "input": bad}))
    assert [loc for loc, _ in refused] == [
        ("body", "input", "items", 0, "quantity"),
        ("body", "input", "items", 1, "quantity"),
        ("body", "input", "payment_method"),
        ("body", "input", "vendor"),
    ]
    assert all(message for _, message in refused)


def test_a_shown_document_is_one_that_applies(system: System, admin: Shop) -> None:
    shop = open_shop(system)
    shown = system.api_get(shop.token, "/definitions/order").json()
    step = shown["steps"][0]
    # Durations as a document writes them; where HTTP participants live, only to admins.
    assert (step["timeout"], step["retry"]["backoff"], step["retry"]["max_backoff"]) == (
        "10s",
        "500ms",
        "30s",
    )
    assert shown["participants"] == {}
    again = post(system, admin.token, "/definitions", shown | {"name": "reorder"})
    assert again.status_code == 201, again.text
    assert system.api_get(shop.token, "/definitions/reorder").json() == shown | {"name": "reorder"}


def test_the_cli_applies_lists_shows_starts_and_deletes(
    system: System, admin: Shop, tmp_path: Path
) -> None:
    shop = open_shop(system)
    document = tmp_path / "parcel.yaml"
    document.write_text(yaml.safe_dump(gift(1) | {"name": "parcel"}))
    checked = system.cli("definitions", "apply", str(document), "--dry-run")
    assert (
        checked.stdout.strip()
        == "parcel version 1: would be registered (dry run: nothing registered)"
    )
    assert system.cli_json("definitions", "apply", str(document), "--dry-run") == {
        "name": "parcel",
        "version": 1,
        "outcome": "created",
        "dry_run": True,
    }
    assert "parcel" not in {d["name"] for d in system.cli_json("definitions", "list")}
    applied = system.cli_json("definitions", "apply", str(document))
    assert applied == {"name": "parcel", "version": 1, "outcome": "created"}
    again = system.cli("definitions", "apply", str(document), "--dry-run")
    assert again.stdout.strip() == "parcel version 1: already registered, unchanged"
    listed = {d["name"]: d for d in system.cli_json("definitions", "list")}
    assert listed["parcel"]["versions"] == [1] and listed["order"]["builtin"] == [1]
    shown = json.loads(system.cli("definitions", "show", "parcel").stdout)
    assert shown["name"] == "parcel" and len(shown["steps"]) == 4
    assert system.cli_json("definitions", "show", "parcel") == shown  # --json: the same
    system.pause("stock")  # the saga waits at its first step
    try:
        started = system.cli_json(
            "start", "parcel", "--input", json.dumps(gift_input(shop)), "--customer", shop.customer
        )
        assert started["type"] == "parcel" and started["definition_version"] == 1
        in_use = system.cli("definitions", "delete", "parcel", "--version", "1", check=False)
        assert in_use.returncode == 1 and "used by 1 saga" in in_use.stderr
    finally:
        system.resume("stock")
    saga = system.wait_terminal(shop.token, started["saga_id"])
    assert saga["status"] == "completed"
    deleted = system.cli_json("definitions", "delete", "parcel", "--version", "1")
    assert deleted == {"name": "parcel", "version": 1, "outcome": "deleted"}
    gone = system.cli("definitions", "show", "parcel", check=False)
    assert gone.returncode == 1 and "no saga definition parcel" in gone.stderr
    back = system.cli("definitions", "apply", str(document), "--dry-run", check=False)
    assert back.returncode == 1 and "was deleted; a version never comes back" in back.stderr
    bad = system.cli(
        "start", "parcel", "--input", "{not json", "--customer", "x@example.com", check=False
    )
    assert bad.returncode == 2 and "--input is not JSON" in bad.stderr
    refused = system.cli(
        "start", "order", "--input", "{}", "--customer", "x@example.com", check=False
    )
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.startswith("saga: error: Invalid value for '--input': input.")
    assert "input.vendor: 'vendor' is a required property" in refused.stderr


def test_applying_a_definition_says_which_participant_nothing_reads_yet(
    system: System, tmp_path: Path
) -> None:
    running = tmp_path / "boxed.yaml"
    running.write_text(yaml.safe_dump(gift(1) | {"name": "boxed"}))
    applied = system.cli("definitions", "apply", str(running))
    assert applied.returncode == 0 and "nothing reads" not in applied.stderr, applied.stderr
    steps = json.loads(json.dumps(ORDER_DOCUMENT["steps"]))
    steps[0]["participant"] = "stok"  # a typo: its commands would wait for a timeout
    mistyped = tmp_path / "typo.yaml"
    mistyped.write_text(yaml.safe_dump(gift(1) | {"name": "typo", "steps": steps}))
    applied = system.cli("definitions", "apply", str(mistyped))
    assert applied.returncode == 0, applied.stderr  # registered: it may start later
    assert applied.stderr.splitlines() == [
        f"saga: nothing reads {system.namespace}.stok yet: start participant 'stok' "
        "(or check the name: its steps time out until something answers)"
    ]


def test_starting_a_type_that_is_not_registered_names_the_types_there_are(system: System) -> None:
    started = system.cli(
        "start", "ordr", "--input", "{}", "--customer", "ann@example.com", check=False
    )
    assert started.returncode == 1
    assert started.stderr.startswith("saga: error: no saga definition ordr (the types: ")
    assert "order" in started.stderr.split("(the types: ")[1]
