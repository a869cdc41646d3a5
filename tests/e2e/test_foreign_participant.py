"""A participant written on plain AMQP — aio-pika and JSON, nothing of this project's
runtime — against the wire protocol as docs/wire-protocol.md documents it."""

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import aio_pika
import httpx
import pytest

from tests.e2e.shop import Shop, open_shop
from tests.e2e.system import System
from tests.servers import RABBITMQ_URL

DELIVERY = {
    "name": "delivery",
    "version": 1,
    "roles": ["customer"],
    "input": {
        "type": "object",
        "required": ["address", "value"],
        "properties": {"address": {"type": "string"}, "value": {"type": "integer"}},
    },
    "steps": [
        {
            "name": "book_courier",
            "participant": "courier",
            "action": {
                "command": "BookCourier",
                "input": {"address": "{{input.address}}", "for": "{{saga.customer}}"},
                "reply": "CourierBooked",
            },
            "compensation": {
                "command": "CancelCourier",
                "input": {"booking": "{{steps.book_courier.result.booking | optional}}"},
                "reply": "CourierCancelled",
            },
        },
        {
            "name": "insure",
            "participant": "courier",
            "action": {
                "command": "Insure",
                "input": {"value": "{{input.value}}"},
                "reply": "Insured",
            },
            "compensation": {"command": "Uninsure", "reply": "Uninsured"},
        },
    ],
}


class Courier:
    """The foreign participant: books couriers, insures parcels worth up to 1000.

    It takes `delay` seconds per command, one command at a time."""

    def __init__(self, namespace: str, *, delay: float = 0) -> None:
        self.namespace = namespace
        self.delay = delay
        self.seen: list[tuple[dict[str, Any], aio_pika.abc.AbstractIncomingMessage]] = []
        self.replies: dict[str, dict[str, Any]] = {}  # by idempotency key: the same reply again
        self.work: list[str] = []  # the idempotency keys whose work was done

    def reply_to(self, command: dict[str, Any], first: dict[str, Any]) -> dict[str, Any]:
        """What to send for a command: the reply given the first time, as it was."""
        return first

    def answer(self, command: dict[str, Any]) -> dict[str, Any]:
        kind, payload = command["type"], command["payload"]
        if kind == "BookCourier":
            return {"type": "CourierBooked", "payload": {"booking": f"b-{uuid.uuid4().hex[:6]}"}}
        if kind == "Insure" and payload["value"] > 1000:
            return {
                "type": "CommandFailed",
                "payload": {"reason": "uninsurable", "transient": False},
            }
        if kind == "Insure":
            return {"type": "Insured", "payload": {"premium": payload["value"] // 100}}
        if kind == "CancelCourier":
            return {"type": "CourierCancelled", "payload": {"booking": payload["booking"]}}
        return {"type": "CommandFailed", "payload": {"reason": "unknown_command"}}

    async def run(self, stop: asyncio.Event) -> None:
        ns = self.namespace
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await channel.set_qos(prefetch_count=1 if self.delay else 10)
            queue = await channel.declare_queue(
                f"{ns}.courier",
                durable=True,
                arguments={
                    "x-queue-type": "quorum",
                    "x-dead-letter-exchange": f"{ns}.dead",
                    "x-delivery-limit": 11,
                },
            )
            await queue.bind(f"{ns}.commands", routing_key="courier")
            replies = await channel.get_exchange(f"{ns}.replies", ensure=True)

            async def on_command(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                command = json.loads(message.body)
                self.seen.append((command, message))
                key = command["idempotency_key"]
                await asyncio.sleep(self.delay)
                if key not in self.replies:
                    self.work.append(key)
                    answer = self.answer(command)
                    self.replies[key] = {
                        "message_id": uuid.uuid4().hex,
                        "saga_id": command["saga_id"],
                        "correlation_id": command["correlation_id"],
                        "causation_id": command["message_id"],
                        "type": answer["type"],
                        "sent_at": datetime.now(UTC).isoformat(),
                        "payload": answer["payload"],
                    }
                reply = self.reply_to(command, self.replies[key])
                await replies.publish(
                    aio_pika.Message(
                        json.dumps(reply).encode(),
                        content_type="application/json",
                        message_id=reply["message_id"],
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key="orchestrator",
                )
                await message.ack()  # only once the reply is the broker's

            await queue.consume(on_command)
            await stop.wait()


@contextmanager
def running(courier: Courier) -> Iterator[None]:
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ready = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)

        async def go() -> None:
            task = asyncio.create_task(courier.run(stop))
            ready.set()
            await task

        loop.run_until_complete(go())

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    ready.wait(5)
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


@pytest.fixture
def shop(system: System) -> Shop:
    return open_shop(system)


def start(system: System, shop: Shop, value: int) -> str:
    response = httpx.post(
        f"{system.api}/sagas",
        json={"type": "delivery", "input": {"address": "1 Main Street", "value": value}},
        headers={"Authorization": f"Bearer {shop.token}"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["saga_id"])


def test_a_participant_on_plain_amqp_takes_part_in_sagas(system: System, shop: Shop) -> None:
    admin = open_shop(system, role="admin")
    applied = httpx.post(
        f"{system.api}/definitions",
        json=DELIVERY,
        headers={"Authorization": f"Bearer {admin.token}"},
        timeout=10,
    )
    assert applied.status_code in (200, 201), applied.text
    courier = Courier(system.namespace)
    with running(courier):
        done = system.wait_terminal(shop.token, start(system, shop, value=400))
        undone = system.wait_terminal(shop.token, start(system, shop, value=5000))
    assert done["status"] == "completed"
    assert undone["status"] == "compensated" and undone["reason"] == "uninsurable"
    assert [s["status"] for s in undone["steps"]] == ["compensated", "failed"]

    by_saga: dict[str, list[dict[str, Any]]] = {}
    for command, message in courier.seen:
        by_saga.setdefault(command["saga_id"], []).append(command)
        # What docs/wire-protocol.md promises of every command message.
        assert message.message_id == command["message_id"]
        assert message.content_type == "application/json"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.type == command["type"]
        assert command["correlation_id"] == command["saga_id"]
    booked, insured = by_saga[done["saga_id"]]
    assert (booked["type"], insured["type"]) == ("BookCourier", "Insure")
    assert booked["payload"] == {"address": "1 Main Street", "for": shop.customer}
    assert booked["idempotency_key"] == f"{done['saga_id']}:book_courier:execute"
    assert insured["causation_id"] == courier.replies[booked["idempotency_key"]]["message_id"]
    kinds = [c["type"] for c in by_saga[undone["saga_id"]]]
    assert kinds == ["BookCourier", "Insure", "CancelCourier"]
    cancel = by_saga[undone["saga_id"]][2]
    booking = courier.replies[f"{undone['saga_id']}:book_courier:execute"]["payload"]["booking"]
    assert cancel["payload"] == {"booking": booking}
    assert cancel["idempotency_key"] == f"{undone['saga_id']}:book_courier:compensate"


# One step whose participant is slower than the step's timeout: every try times out.
SLOW = {
    "name": "slow-delivery",
    "version": 1,
    "roles": ["customer"],
    "input": {"type": "object"},
    "steps": [
        {
            "name": "book_courier",
            "participant": "courier",
            "action": {
                "command": "BookCourier",
                "input": {"address": "{{input.address}}"},
                "reply": "CourierBooked",
            },
            "compensation": {"command": "CancelCourier", "reply": "CourierCancelled"},
            "timeout": "1s",
            "retry": {"max_attempts": 3, "backoff": "100ms"},
        }
    ],
}


class NamingCourier(Courier):
    """Answers a repeat with the first reply's message_id and payload, naming the command
    it answers now as its causation."""

    def reply_to(self, command: dict[str, Any], first: dict[str, Any]) -> dict[str, Any]:
        return {**first, "causation_id": command["message_id"]}


@pytest.mark.parametrize("kind", [Courier, NamingCourier], ids=["as_it_was", "naming_the_retry"])
def test_a_participant_slower_than_the_timeout_that_reuses_its_reply_gets_it_applied(
    system: System, shop: Shop, kind: type[Courier]
) -> None:
    admin = open_shop(system, role="admin")
    applied = httpx.post(
        f"{system.api}/definitions",
        json=SLOW,
        headers={"Authorization": f"Bearer {admin.token}"},
        timeout=10,
    )
    assert applied.status_code in (200, 201), applied.text
    courier = kind(system.namespace, delay=1.5)
    with running(courier):
        response = httpx.post(
            f"{system.api}/sagas",
            json={"type": "slow-delivery", "input": {"address": "1 Main Street"}},
            headers={"Authorization": f"Bearer {shop.token}"},
            timeout=10,
        )
        assert response.status_code == 202, response.text
        saga = system.wait_terminal(shop.token, response.json()["saga_id"], within=30)
    assert saga["status"] == "completed", saga
    key = f"{saga['saga_id']}:book_courier:execute"
    # The work was done once (commands of an earlier test's saga may still be queued).
    assert [k for k in courier.work if k.startswith(saga["saga_id"])] == [key]
    tries = [c for c, _ in courier.seen if c["idempotency_key"] == key]
    assert len(tries) >= 2, "the step's first try timed out: it was retried"
