"""The operator's command line: one-line errors, JSON for scripts, clean stops on SIGTERM."""

import asyncio
import json
import socket
import subprocess
import sys
import uuid

import httpx
import pytest
import redis

from saga.auth.keys import KeyRing
from tests.e2e.shop import open_shop
from tests.e2e.system import System, running_system
from tests.servers import forget_namespace, fresh_namespace, redis_or_skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "no-such-saga"], "no saga 'no-such-saga'"),
        (["stock", "show", "no-such-product"], "no product 'no-such-product'"),
        (["order", "show", "ord_missing"], "no order 'ord_missing'"),
        (["payment", "deposit", "not-an-email", "5"], "not an email address"),
        (["payment", "deposit", "a@example.com", "5.001"], "'AMOUNT': '5.001'"),
        (["stock", "set", "p 1", "--quantity", "1", "--price", "1"], "is not a product id"),
        (["list", "--status", "sleeping"], "'sleeping' is not one of"),
        (
            ["stock", "set", "kiwi", "--quantity", "1" + "0" * 23, "--price", "1.00"],
            "'--quantity'",
        ),
        (["stock", "set", "kiwi", "--quantity", "1", "--price", "1000000000.01"], "'--price'"),
        (["auth", "add-user", "a@example.com", "--password", "short"], "at least 8"),
    ],
)
def test_a_cli_error_is_one_line_on_stderr(system: System, args: list[str], message: str) -> None:
    result = system.cli(*args, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "no-such-saga"], "no saga 'no-such-saga'"),
        (["stock", "show", "no-such-product"], "no product 'no-such-product'"),
        (
            ["payment", "show", "nobody@example.com"],
            "no account for 'nobody@example.com' (no deposit, no charge)",
        ),
        (["order", "show", "ord_missing"], "no order 'ord_missing'"),
        (["definitions", "show", "no-such-type"], "no saga definition no-such-type"),
        (
            ["definitions", "show", "order", "--version", "99"],
            "no saga definition order version 99",
        ),
    ],
)
def test_every_show_of_an_unknown_id_is_an_error_naming_it(
    system: System, args: list[str], message: str
) -> None:
    for json_out in ([], ["--json"]) if args[0] != "definitions" else ([],):
        result = system.cli(*args, *json_out, check=False)
        assert (result.returncode, result.stdout) == (1, ""), result
        assert result.stderr.strip() == f"saga: error: {message}", result.stderr


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["list"], "no sagas"),
        (["list", "--status", "failed"], "no failed sagas"),
        (["order", "list"], "no orders"),
        (["order", "vendor", "list"], "no vendors"),
    ],
)
def test_a_list_with_nothing_in_it_says_so(system: System, args: list[str], line: str) -> None:
    empty = fresh_namespace()
    try:
        # A sign of life: a product, and nothing else.
        system.cli("stock", "set", "apple", "--quantity", "1", "--price", "1", SAGA_NAMESPACE=empty)
        said = system.cli(*args, SAGA_NAMESPACE=empty)
        assert said.stdout.strip() == line, said.stdout
        assert system.cli(*args, "--json", SAGA_NAMESPACE=empty).stdout.strip() == "[]"
    finally:
        forget_namespace(empty)


@pytest.mark.parametrize(
    ("args", "empty"),
    [
        (["list"], "no sagas"),
        (["list", "--status", "failed"], "no failed sagas"),
        (["order", "list"], "no orders"),
        (["order", "vendor", "list"], "no vendors"),
        (["replay", "--status", "failed"], "no failed sagas"),
        (["dlq", "list"], "no dead-letter queue"),
    ],
)
def test_an_empty_list_in_a_namespace_with_no_sign_of_life_asks_if_it_is_the_right_one(
    system: System, args: list[str], empty: str
) -> None:
    mistyped = fresh_namespace()
    for json_out in ([], ["--json"]):
        said = system.cli(*args, *json_out, check=False, SAGA_NAMESPACE=mistyped)
        assert (said.returncode, said.stdout) == (1, ""), said
        assert said.stderr.startswith(f"saga: error: {empty}"), said.stderr
        assert said.stderr.strip().endswith(
            f": nothing runs in namespace {mistyped!r} (is SAGA_NAMESPACE right?)"
        ), said.stderr


@pytest.mark.parametrize(
    "sign",
    [
        ["stock", "set", "apple", "--quantity", "1", "--price", "1"],
        ["order", "vendor", "add", "shop@example.com"],
        ["definitions", "apply", "examples/fanout/account-review.yaml"],
        ["auth"],  # the auth service started: its token key
    ],
)
def test_any_sign_of_life_makes_an_empty_list_just_empty(system: System, sign: list[str]) -> None:
    namespace = fresh_namespace()
    try:
        if sign == ["auth"]:
            asyncio.run(_auth_key(namespace))
        else:
            system.cli(*sign, SAGA_NAMESPACE=namespace)
        assert system.cli("list", SAGA_NAMESPACE=namespace).stdout.strip() == "no sagas"
    finally:
        forget_namespace(namespace)


async def _auth_key(namespace: str) -> None:
    """What the auth service does as it starts (with no SAGA_AUTH_SECRET)."""
    redis = await redis_or_skip()
    try:
        await KeyRing(redis, namespace).ensure()
    finally:
        await redis.aclose()


def test_the_cli_s_json_and_the_api_s_agree_field_by_field(system: System) -> None:
    admin = open_shop(system, role="admin")
    saga_id = admin.order([("apple", 1)])["saga_id"]
    from_api = system.saga(admin.token, saga_id).json()
    shown = system.cli_json("show", saga_id)
    for name, value in from_api.items():
        assert shown[name] == value, (name, shown[name], value)
    events = system.api_get(admin.token, f"/sagas/{saga_id}/events").json()
    assert shown["events"] == events
    api_listed = system.api_get(admin.token, "/sagas?limit=1000").json()
    [listed_by_api] = [s for s in api_listed if s["saga_id"] == saga_id]
    [listed] = [s for s in system.cli_json("list", "--limit", "1000") if s["saga_id"] == saga_id]
    assert {k: listed[k] for k in listed_by_api} == listed_by_api
    times = [
        shown["created_at"],
        shown["updated_at"],
        *(e["at"] for e in shown["events"]),
        *(t for row in shown["timeline"] for t in (row["start"], row["end"]) if t),
    ]
    assert all(t.endswith("Z") for t in times), times
    # The operator may start anything: the CLI's list is an admin's.
    definitions = system.api_get(admin.token, "/definitions").json()
    assert system.cli_json("definitions", "list") == definitions
    started = system.cli_json(
        "start",
        "order",
        "--input",
        json.dumps(
            {
                "vendor": admin.vendor,
                "delivery_address": "1 Main Street",
                "items": [{"product_id": admin.products["apple"], "quantity": 1}],
                "payment_method": "Cash on Delivery",
            }
        ),
        "--customer",
        admin.customer,
    )
    from_api = system.saga(admin.token, started["saga_id"]).json()
    assert {k: from_api[k] for k in started if k != "status"} == {
        k: v for k, v in started.items() if k != "status"
    }


def test_unreachable_redis_is_named(system: System) -> None:
    result = system.cli("list", check=False, SAGA_REDIS_URL="redis://127.0.0.1:1/0")
    assert result.returncode == 1
    assert "cannot reach Redis" in result.stderr and "Traceback" not in result.stderr


def test_a_bad_setting_is_named(system: System) -> None:
    result = system.cli("list", check=False, SAGA_NAMESPACE="Not Valid!")
    assert result.returncode == 2
    assert "SAGA_NAMESPACE" in result.stderr and "Traceback" not in result.stderr


def test_data_commands_print_json(system: System) -> None:
    product = system.cli_json("stock", "set", "json-p1", "--quantity", "4", "--price", "1.5")
    assert product == {
        "product_id": "json-p1",
        "available": 4,
        "reserved": 0,
        "sold": 0,
        "price": "1.50",
    }
    account = system.cli_json("payment", "deposit", "Json@Example.com", "2.25")
    assert account == {"customer": "json@example.com", "balance": "2.25", "ledger": []}


def _roles_in_a_token(system: System, email: str, password: str) -> list[str]:
    token = system.token(email, password)
    verified = httpx.post(f"{system.auth}/auth/verify", json={"token": token}, timeout=10)
    assert verified.status_code == 200, verified.text
    return list(verified.json()["roles"])


def test_a_password_reset_keeps_the_user_s_roles_and_role_sets_them(system: System) -> None:
    email = f"op-{uuid.uuid4().hex[:8]}@example.com"
    created = system.cli("auth", "add-user", email, "--password", "first-pass", "--role", "admin")
    assert created.stdout.strip() == f"user {email} created, roles: admin, customer"
    reset = system.cli("auth", "add-user", email, "--password", "second-pass")
    assert reset.stdout.strip() == f"user {email} updated, roles: admin, customer"
    assert _roles_in_a_token(system, email, "second-pass") == ["admin", "customer"]
    demoted = system.cli_json(
        "auth", "add-user", email, "--password", "third-pass", "--role", "customer"
    )
    assert demoted == {"email": email, "roles": ["customer"], "created": False}
    assert _roles_in_a_token(system, email, "third-pass") == ["customer"]


def test_a_deposit_that_would_pass_the_balance_bound_is_refused(system: System) -> None:
    customer = f"rich-{uuid.uuid4().hex[:8]}@example.com"
    client = redis.Redis.from_url(system.redis_url, decode_responses=True)
    try:  # a cent short of the bound (a hundred of the largest deposits)
        client.set(f"{system.namespace}:payment:{{payment}}:balance:{customer}", 10**13 - 1)
    finally:
        client.close()
    result = system.cli("payment", "deposit", customer, "0.02", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "saga: error: deposit refused: a balance holds at most 100,000,000,000.00: "
        f"{customer}'s is 99,999,999,999.99, and 0.02 more would pass it"
    )
    account = system.cli_json("payment", "deposit", customer, "0.01")
    assert account["balance"] == "100000000000.00"


def test_every_process_stops_cleanly_on_sigterm(system: System) -> None:
    with running_system(system.logs) as other:
        assert set(other.stop().values()) == {0}


def test_an_api_whose_port_is_taken_exits_at_once(system: System) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "saga", "api", "--port", str(port)],
            env=system.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode != 0
    assert "address already in use" in result.stderr
