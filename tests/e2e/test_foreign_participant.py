"""A participant written on plain AMQP — aio-pika and JSON, nothing of this project's
runtime (tests/courier.py) — taking part in sagas, against the wire protocol as
docs/wire-protocol.md documents it."""

from typing import Any

import aio_pika
import httpx
import pytest

from tests.courier import DELIVERY, Courier, running
from tests.e2e.shop import Shop, open_shop
from tests.e2e.system import System


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
