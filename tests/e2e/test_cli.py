"""The operator's command line: one-line errors, JSON for scripts, clean stops on SIGTERM."""

import json
import signal
import socket
import subprocess
import sys
import uuid

import pytest
import redis

from tests.e2e.shop import open_shop
from tests.e2e.system import System, free_port, running_system
from tests.servers import forget_namespace, fresh_namespace


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "no-such-saga"], "no saga 'no-such-saga'"),
        (["stock", "show", "no-such-product"], "no product 'no-such-product'"),
        (["order", "show", "ord_missing"], "no order 'ord_missing'"),
        (["payment", "deposit", "not-an-email", "5"], "not an email address"),
        (["payment", "deposit", "a@example.com", "5.001"], "bad amount"),
        (["stock", "set", "p 1", "--quantity", "1", "--price", "1"], "bad product id"),
        (
            ["stock", "set", "kiwi", "--quantity", "1" + "0" * 23, "--price", "1.00"],
            "bad quantity: a quantity is at most 1,000,000,000,000",
        ),
        (["stock", "set", "kiwi", "--quantity", "1", "--price", "1e9"], "bad price"),
        (["list", "--status", "sleeping"], "unknown status 'sleeping'"),
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
        said = system.cli(*args, SAGA_NAMESPACE=empty)
        assert said.stdout.strip() == line, said.stdout
        assert system.cli(*args, "--json", SAGA_NAMESPACE=empty).stdout.strip() == "[]"
    finally:
        forget_namespace(empty)


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


def test_saga_up_runs_everything_and_stops_on_ctrl_c(system: System) -> None:
    namespace = fresh_namespace()
    env = {**system.env, "SAGA_NAMESPACE": namespace}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "saga",
            "up",
            "--api-port",
            str(free_port()),
            "--auth-port",
            str(free_port()),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    workers = {"orchestrator", "stock", "payment", "order"}
    running: set[str] = set()
    for line in proc.stdout:
        name, _, text = line.partition("|")
        if "running" in text:
            running.add(name.strip())
        if workers <= running:
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    forget_namespace(namespace)
    assert workers <= running, rest
    assert proc.returncode == 0, rest


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


def test_saga_up_with_a_port_taken_stops_everything_without_a_traceback(system: System) -> None:
    namespace = fresh_namespace()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "saga",
                "up",
                "--api-port",
                str(free_port()),
                "--auth-port",
                str(taken.getsockname()[1]),
            ],
            env={**system.env, "SAGA_NAMESPACE": namespace},
            capture_output=True,
            text=True,
            timeout=60,
        )
    forget_namespace(namespace)
    assert result.returncode == 1
    assert "auth exited; stopping everything" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
