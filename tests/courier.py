"""A participant written on plain AMQP — aio-pika and JSON, nothing of this project — that
keeps the wire protocol as docs/wire-protocol.md documents it; its hooks let a test
break one rule at a time."""

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import aio_pika

from tests.servers import RABBITMQ_URL

# A saga type whose two steps the courier takes.
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
COMMANDS = ("BookCourier", "CancelCourier", "Insure", "Uninsure")
COMPENSATIONS = ("CancelCourier", "Uninsure")
# What an envelope must hold, and as what (no other field is allowed).
ENVELOPE = {
    "message_id": str,
    "saga_id": str,
    "correlation_id": str,
    "causation_id": (str, type(None)),
    "type": str,
    "sent_at": str,
    "payload": dict,
    "idempotency_key": (str, type(None)),
    "traceparent": (str, type(None)),
}
REQUIRED = ("message_id", "saga_id", "correlation_id", "type", "sent_at")


def envelope_problem(command: Any) -> str | None:
    """What makes a body's JSON not a command envelope, if anything."""
    if not isinstance(command, dict):
        return "not a JSON object"
    missing = [name for name in REQUIRED if name not in command]
    if missing:
        return f"no {', '.join(missing)}"
    for name, value in command.items():
        if name not in ENVELOPE:
            return f"unknown field {name}"
        if not isinstance(value, ENVELOPE[name]):
            return f"{name} is not a {ENVELOPE[name]}"
    return None


def unit_of(key: str) -> str:
    """The `<saga>:<step>` an idempotency key `<saga>:<step>:<action>[:replayN]` names."""
    parts = key.split(":replay")[0].rsplit(":", 2)
    return ":".join(parts[:2]) if len(parts) == 3 else key


class Courier:
    """The foreign participant: books couriers, insures parcels worth up to 1000.

    It takes `delay` seconds per command, one command at a time; it consumes the queue
    `<namespace>.<name>`."""

    def __init__(self, namespace: str, *, delay: float = 0, name: str = "courier") -> None:
        self.namespace = namespace
        self.name = name
        self.delay = delay
        self.seen: list[tuple[dict[str, Any], aio_pika.abc.AbstractIncomingMessage]] = []
        self.replies: dict[str, dict[str, Any]] = {}  # by idempotency key: the same reply again
        self.work: list[str] = []  # the idempotency keys whose work was done
        self.undone: set[str] = set()  # `<saga>:<step>` a compensation came for
        self.dead: aio_pika.abc.AbstractExchange | None = None
        self.consuming = threading.Event()

    @property
    def queue(self) -> str:
        return f"{self.namespace}.{self.name}"

    # --- the hooks a broken courier overrides ---------------------------------------

    def reply_to(self, command: dict[str, Any], first: dict[str, Any]) -> dict[str, Any]:
        """What to send for a command: the reply given the first time, as it was."""
        return first

    def remembered(self, key: str) -> dict[str, Any] | None:
        """The reply given before under this idempotency key, if any."""
        return self.replies.get(key)

    def refuses_late(self, unit: str) -> bool:
        """Whether a command of this `<saga>:<step>` is refused: its compensation came first."""
        return unit in self.undone

    def answers(self, command: dict[str, Any]) -> bool:
        """Whether to answer a command at all."""
        return True

    async def dead_letter(self, message: aio_pika.abc.AbstractIncomingMessage, reason: str) -> None:
        """Park a message it cannot read, as the protocol says, then ack it."""
        assert self.dead is not None
        headers = dict(message.headers or {})
        headers.setdefault("x-saga-dead-letter-id", uuid.uuid4().hex)
        headers["x-saga-dead-reason"] = reason
        headers["x-saga-source-queue"] = self.queue
        await self.dead.publish(
            aio_pika.Message(
                message.body,
                headers=headers,
                message_id=message.message_id,
                content_type=message.content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=self.queue,
        )
        await message.ack()

    # --- the business ---------------------------------------------------------------

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
            return {"type": "CourierCancelled", "payload": {"booking": payload.get("booking")}}
        if kind == "Uninsure":
            return {"type": "Uninsured", "payload": {}}
        return {"type": "CommandFailed", "payload": {"reason": "unknown_command"}}

    def outcome(self, command: dict[str, Any], key: str) -> dict[str, Any]:
        """The answer to a command not seen before under its key, the work done if any."""
        unit = unit_of(key)
        if command["type"] in COMPENSATIONS:
            self.undone.add(unit)
        elif command["type"] in COMMANDS and self.refuses_late(unit):
            return {"type": "CommandFailed", "payload": {"reason": "compensated_before"}}
        self.work.append(key)
        return self.answer(command)

    async def run(self, stop: asyncio.Event) -> None:
        ns = self.namespace
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await channel.set_qos(prefetch_count=1 if self.delay else 10)
            queue = await channel.declare_queue(
                self.queue,
                durable=True,
                arguments={
                    "x-queue-type": "quorum",
                    "x-dead-letter-exchange": f"{ns}.dead",
                    "x-delivery-limit": 11,
                },
            )
            await queue.bind(f"{ns}.commands", routing_key=self.name)
            replies = await channel.get_exchange(f"{ns}.replies", ensure=True)
            self.dead = await channel.get_exchange(f"{ns}.dead", ensure=True)

            async def on_command(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                try:
                    command = json.loads(message.body)
                except ValueError as exc:
                    await self.dead_letter(message, f"not JSON: {exc}")
                    return
                problem = envelope_problem(command)
                if problem is not None:
                    await self.dead_letter(message, f"not an envelope: {problem}")
                    return
                self.seen.append((command, message))
                if not self.answers(command):
                    await message.ack()
                    return
                key = command.get("idempotency_key") or command["message_id"]
                await asyncio.sleep(self.delay)
                first = self.remembered(key)
                if first is None:
                    answer = self.outcome(command, key)
                    first = self.replies[key] = {
                        "message_id": uuid.uuid4().hex,
                        "saga_id": command["saga_id"],
                        "correlation_id": command["correlation_id"],
                        "causation_id": command["message_id"],
                        "type": answer["type"],
                        "sent_at": datetime.now(UTC).isoformat(),
                        "payload": answer["payload"],
                    }
                reply = self.reply_to(command, first)
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
            self.consuming.set()
            await stop.wait()


@contextmanager
def running(courier: Courier) -> Iterator[None]:
    """The courier on a thread of its own, consuming its queue until the block ends."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(courier.run(stop))

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert courier.consuming.wait(15), f"the courier did not start consuming {courier.queue}"
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
