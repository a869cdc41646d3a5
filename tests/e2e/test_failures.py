"""Failure is the normal case: a participant away, cancels, failed sagas replayed, poison
messages, repeated replies — on the real processes with short timeouts."""

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import aio_pika
import httpx
import pytest
import redis

from contracts.envelope import Envelope
from contracts.topology import Topology
from tests.e2e.shop import open_shop
from tests.e2e.system import System, free_port, log_lines, running_system
from tests.servers import RABBITMQ_URL, SHOP_PARTICIPANTS
from tests.waiting import eventually_sync

FAST = {
    "SAGA_STEP_TIMEOUT": "1",
    "SAGA_MAX_ATTEMPTS": "2",
    "SAGA_RETRY_BACKOFF": "0.1",
    "SAGA_COMPENSATION_MAX_ATTEMPTS": "2",
    "SAGA_RELAY_GRACE": "1",
}


@pytest.fixture(scope="module")
def fast(system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """A system of its own, with one-second timeouts and small retry budgets."""
    with running_system(tmp_path_factory.mktemp("fast"), settings=FAST) as running:
        yield running


def wait_status(
    system: System, token: str, saga_id: str, *statuses: str, within: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = system.saga(token, saga_id).json()
        if body["status"] in statuses:
            return body
        time.sleep(0.1)
    raise AssertionError(f"saga {saga_id} not {statuses} within {within}s: {body}")


def step_status(system: System, token: str, saga_id: str, step: str) -> str:
    steps = system.saga(token, saga_id).json()["steps"]
    return str(next(s["status"] for s in steps if s["name"] == step))


def event_types(system: System, saga_id: str) -> list[str]:
    return [e["type"] for e in system.cli_json("show", saga_id)["events"]]


def test_a_participant_that_never_answers_fails_the_saga_after_its_retries_then_replay_finishes_it(
    fast: System,
) -> None:
    shop = open_shop(fast)
    fast.kill("order")  # kill -9: CreateOrder and then CancelOrder get no reply
    try:
        saga_id = shop.place([("apple", 2)])
        saga = wait_status(fast, shop.token, saga_id, "failed")
    finally:
        fast.restart("order")
    assert saga["reason"] == "compensation of create_order failed: timeout"
    events = event_types(fast, saga_id)
    assert events.count("StepTimedOut") == 4  # two tries of the order, two of its undo
    assert events.count("RetryScheduled") == 2
    # Everything else was undone meanwhile.
    assert shop.account()["balance"] == "100.00"
    assert shop.stock("apple")["reserved"] == 0
    failed = fast.cli_json("list", "--status", "failed")
    assert saga_id in [s["saga_id"] for s in failed]

    # The order service is back and works through its queue: the order is created, then
    # cancelled, or (handled concurrently, the undo first) never created. Replay makes
    # the saga see that.
    dry = fast.cli_json("replay", saga_id, "--dry-run")
    assert [c["type"] for c in dry[0]["commands"]] == ["CancelOrder"]
    assert fast.saga(shop.token, saga_id).json()["status"] == "failed"  # a dry run changes nothing
    replayed = fast.cli_json("replay", saga_id)
    key = replayed[0]["commands"][0]["idempotency_key"]
    assert key == f"{saga_id}:create_order:compensate:replay1"
    saga = wait_status(fast, shop.token, saga_id, "compensated")
    assert saga["reason"] == "timeout"
    assert "SagaReplayed" in event_types(fast, saga_id)
    # The timeline keeps both rounds of the undo; the order service's log names the
    # replayed compensation's step, action and replay.
    timeline = fast.cli_json("show", saga_id)["timeline"]
    undo = [r for r in timeline if (r["step"], r["action"]) == ("create_order", "compensate")]
    assert [(r["replay"], r["attempts"], r["outcome"]) for r in undo] == [
        (0, 2, "failed: timeout"),
        (1, 1, "compensated"),
    ]
    replayed_line = eventually_sync(
        lambda: [
            (line["step"], line["action"], line["replay"])
            for line in log_lines(fast.logs / "order.log", saga_id)
            if line["event"] == "command handled" and line.get("replay")
        ],
        what="the order service logs the replayed compensation",
    )
    assert replayed_line == [("create_order", "compensate", 1)]
    orders = [o for o in fast.cli_json("order", "list") if o["saga_id"] == saga_id]
    assert [o["status"] for o in orders] in ([], ["cancelled"])


def test_a_replay_while_rabbitmq_is_away_says_its_command_waits_in_the_outbox(
    fast: System,
) -> None:
    shop = open_shop(fast)
    fast.kill("order")
    try:
        saga_id = shop.place([("apple", 1)])
        wait_status(fast, shop.token, saga_id, "failed")
    finally:
        fast.restart("order")
    # The operator's CLI cannot reach the broker (the orchestrator still can).
    away = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    replayed = fast.cli("replay", saga_id, SAGA_RABBITMQ_URL=away)
    assert "RabbitMQ unreachable" in replayed.stderr
    assert "sent" not in replayed.stdout.replace("not sent", "")
    assert "stored in its outbox but not sent" in replayed.stdout, replayed.stdout
    assert "CancelOrder to order" in replayed.stdout
    # The orchestrator's relay sends it: the saga ends as if the CLI had.
    assert wait_status(fast, shop.token, saga_id, "compensated")["reason"] == "timeout"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["replay", "no-such-saga"], 1, "no saga 'no-such-saga'"),
        (["replay"], 2, "name one saga"),
        (["replay", "--status", "running"], 2, "only failed sagas"),
    ],
)
def test_replay_refuses_what_it_cannot_do(
    fast: System, args: list[str], code: int, message: str
) -> None:
    result = fast.cli(*args, check=False)
    assert result.returncode == code and message in result.stderr


def test_replay_refuses_a_saga_that_has_not_failed(fast: System) -> None:
    shop = open_shop(fast)
    saga = shop.order([("apple", 1)])
    result = fast.cli("replay", saga["saga_id"], check=False)
    assert result.returncode == 1
    assert "is completed, not failed" in result.stderr


def test_a_slow_participant_is_retried_and_the_saga_completes(fast: System) -> None:
    shop = open_shop(fast)
    fast.pause("payment")
    try:
        saga_id = shop.place([("apple", 1)])
        deadline = time.monotonic() + 10
        while "StepTimedOut" not in event_types(fast, saga_id):
            assert time.monotonic() < deadline, "the charge never timed out"
            time.sleep(0.2)
    finally:
        fast.resume("payment")
    saga = wait_status(fast, shop.token, saga_id, "completed", "compensated")
    # Either way, exactly one net charge or none, never two.
    ledger = shop.account()["ledger"]
    net = sum((1 if e["kind"] == "charge" else -1) for e in ledger if e["saga_id"] == saga_id)
    assert net == (1 if saga["status"] == "completed" else 0)


def test_cancel_undoes_a_running_saga(system: System) -> None:
    shop = open_shop(system)
    system.pause("payment")  # the saga waits at the charge
    try:
        saga_id = shop.place([("apple", 2)])
        deadline = time.monotonic() + 10
        while step_status(system, shop.token, saga_id, "take_payment") != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        stranger = open_shop(system)
        url = f"{system.api}/sagas/{saga_id}/cancel"
        denied = httpx.post(url, headers={"Authorization": f"Bearer {stranger.token}"}, timeout=10)
        assert denied.status_code == 404
        response = httpx.post(url, headers={"Authorization": f"Bearer {shop.token}"}, timeout=10)
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "compensating"
    finally:
        system.resume("payment")
    saga = wait_status(system, shop.token, saga_id, "compensated")
    assert saga["reason"] == "cancelled"
    # The charge may have been done before its undo: net, nothing was taken.
    assert shop.account()["balance"] == "100.00"
    assert (shop.stock("apple")["available"], shop.stock("apple")["reserved"]) == (10, 0)
    again = httpx.post(url, headers={"Authorization": f"Bearer {shop.token}"}, timeout=10)
    assert again.status_code == 409
    assert "already compensated" in again.json()["detail"]


def test_a_participant_failing_on_a_command_compensates_the_saga_with_its_error_at_once(
    fast: System,
) -> None:
    shop = open_shop(fast)
    # A level Redis cannot count with, as `saga stock set` wrote before levels were bounded.
    client = redis.Redis.from_url(fast.redis_url, decode_responses=True)
    try:
        key = f"{fast.namespace}:stock:{{stock}}:product:{shop.products['pear']}"
        client.hset(key, "available", "1" + "0" * 23)
    finally:
        client.close()
    saga_id = shop.place([("apple", 2), ("pear", 1)])
    saga = wait_status(fast, shop.token, saga_id, "compensated", "failed")
    assert (saga["status"], saga["reason"]) == ("compensated", "participant_error")
    events = fast.cli_json("show", saga_id)["events"]
    # Answered at once, with what went wrong: not requeued, timed out and tried again.
    assert [e["type"] for e in events if e["type"] in ("StepRequested", "StepTimedOut")] == [
        "StepRequested",  # reserve_stock, once
        "StepRequested",  # its compensation, since its effect was unknown
    ]
    [failure] = [e["data"] for e in events if e["type"] == "StepFailed"]
    assert failure["step"] == "reserve_stock"
    assert shop.products["pear"] in failure["detail"], failure
    assert "ResponseError" in failure["detail"], failure
    # Refused before anything was written: the apples are not held by a half-done
    # reservation that no release can find.
    apple = shop.stock("apple")
    assert (apple["available"], apple["reserved"]) == (10, 0)
    assert [x for x in fast.cli_json("dlq", "list") if x["saga_id"] == saga_id] == []


async def publish(topology: Topology, exchange: str, routing_key: str, body: bytes) -> None:
    async with await aio_pika.connect(RABBITMQ_URL) as connection:
        channel = await connection.channel(publisher_confirms=True)
        target = await channel.get_exchange(exchange, ensure=False)
        await target.publish(aio_pika.Message(body, delivery_mode=2), routing_key=routing_key)


def ghost_reply(payload: dict[str, Any]) -> Envelope:
    """A reply for a saga that does not exist: poison to the orchestrator."""
    return Envelope(
        message_id="ghost-reply",
        saga_id="no-such-saga",
        correlation_id="no-such-saga",
        causation_id="c1",
        type="StockReleased",
        sent_at=datetime.now(UTC),
        payload=payload,
    )


def test_poison_messages_are_parked_with_their_reason_then_replayed_or_purged(fast: System) -> None:
    topology = Topology(fast.namespace, SHOP_PARTICIPANTS)
    ghost = ghost_reply({"released": True})
    asyncio.run(publish(topology, topology.replies_exchange, "orchestrator", b"\x00garbage"))
    asyncio.run(publish(topology, topology.replies_exchange, "orchestrator", ghost.to_bytes()))
    asyncio.run(publish(topology, topology.commands_exchange, "stock", b'{"type": 1}'))
    deadline = time.monotonic() + 15
    while len(letters := fast.cli_json("dlq", "list")) < 3:
        assert time.monotonic() < deadline, letters
        time.sleep(0.2)
    reasons = {letter["queue"]: [] for letter in letters}
    for letter in letters:
        reasons[letter["queue"]].append(letter["reason"])
    assert sorted(reasons[topology.orchestrator_queue]) == [
        "unknown saga no-such-saga",
        "unparseable reply: body: Invalid JSON: expected value at line 1 column 1",
    ]
    assert reasons[topology.participant_queue("stock")][0].startswith("unparseable command")
    assert next(x for x in letters if x["saga_id"] == "no-such-saga")["type"] == "StockReleased"

    # Replaying one sends it back; it is poison still, so it comes back to the dead
    # letters, under the same id.
    ghost_id = next(x["id"] for x in letters if x["saga_id"] == "no-such-saga")
    assert fast.cli_json("dlq", "replay", ghost_id) == {"replayed": 1}
    deadline = time.monotonic() + 15
    while ghost_id not in (ids := [x["id"] for x in fast.cli_json("dlq", "list")]):
        assert time.monotonic() < deadline, ids
        time.sleep(0.2)
    assert len(ids) == 3
    assert fast.cli_json("dlq", "purge", "--yes") == {"purged": 3}
    assert fast.cli_json("dlq", "list") == []
    result = fast.cli("dlq", "purge", check=False)
    assert result.returncode == 2 and "--yes" in result.stderr


def test_a_reply_delivered_again_changes_nothing(fast: System) -> None:
    shop = open_shop(fast)
    saga = shop.order([("apple", 1)])
    shown = fast.cli_json("show", saga["saga_id"])
    succeeded = next(e for e in shown["events"] if e["type"] == "StepSucceeded")
    requested = next(e for e in shown["events"] if e["type"] == "StepRequested")
    again = Envelope(
        message_id=succeeded["data"]["reply_id"],
        saga_id=saga["saga_id"],
        correlation_id=saga["saga_id"],
        causation_id=requested["data"]["command_id"],
        type="StockReserved",
        sent_at=datetime.now(UTC),
        payload=succeeded["data"]["result"],
    )
    topology = Topology(fast.namespace, SHOP_PARTICIPANTS)
    for _ in range(3):
        asyncio.run(publish(topology, topology.replies_exchange, "orchestrator", again.to_bytes()))
    time.sleep(1)
    assert fast.cli_json("show", saga["saga_id"])["events"] == shown["events"]
    assert shop.stock("apple")["sold"] == 1
    assert json.dumps(shop.account()["ledger"]).count('"charge"') == 1
