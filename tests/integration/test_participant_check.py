"""The conformance check on real RabbitMQ and Redis: the shop's services and a foreign
participant pass it; a participant that breaks one rule fails that rule's case, and
only that one."""

from decimal import Decimal
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from redis.asyncio import Redis

from saga.core.document import read_definition
from saga.participant import Participant, ParticipantRuntime
from saga.participant.check import (
    UNKNOWN_COMMAND,
    CheckError,
    Report,
    assert_conforms,
    check_participant,
)
from saga.participant.check_samples import Action, StepSample, learn_steps, named_steps
from saga.rabbit import RabbitTransport
from services.messages import COMMANDS
from services.order import order
from services.payment import payment
from services.stock import StockService, stock
from tests.courier import DELIVERY, Courier, running
from tests.servers import RABBITMQ_URL
from tests.shop_saga import BUILTINS

ORDER = BUILTINS["order"][1]
# The courier's steps named as a user without a definition would name them.
COURIER_STEPS = named_steps(
    ["BookCourier:CancelCourier", "Insure:Uninsure"],
    payloads={
        "BookCourier": {"address": "1 Main Street", "for": "ann@example.com"},
        "CancelCourier": {"booking": None},
        "Insure": {"value": 5},
        "Uninsure": {},
    },
)


async def check(
    transport: RabbitTransport, name: str, steps: list[StepSample], **options: Any
) -> Report:
    return await check_participant(
        name,
        steps,
        rabbitmq_url=RABBITMQ_URL,
        namespace=transport.topology.namespace,
        **options,
    )


def failed(report: Report) -> set[tuple[str, str | None]]:
    return {(c.case, c.command) for c in report.cases if c.outcome == "failed"}


async def nothing_parked(transport: RabbitTransport) -> None:
    """The check took out every dead letter it caused."""
    assert await transport.depth(transport.topology.dead_letter_queue) == 0


SHOP: dict[str, Participant] = {"stock": stock, "payment": payment, "order": order}


@pytest.mark.parametrize("name", ["stock", "payment", "order"])
async def test_each_shop_service_passes_every_case_with_payloads_made_up_from_its_contracts(
    transport: RabbitTransport, redis: Redis, namespace: str, name: str
) -> None:
    await ParticipantRuntime(SHOP[name], transport, redis, namespace=namespace).run()
    steps = learn_steps(name, [ORDER], models=COMMANDS)
    report = await check(transport, name, steps)
    assert_conforms(report)
    # Made-up payloads name nothing that exists: every command is refused, and the
    # refusal of a late command still tells the compensation's marker by its reason.
    assert {c.outcome for c in report.cases} == {"passed"}, report.lines()
    kinds = {(c.case, c.command) for c in report.cases}
    assert ("compensation_first", steps[0].action.command) in kinds
    assert {"unknown_command", "malformed_envelope", "not_json", "ids"} <= {c[0] for c in kinds}
    assert report.left_behind == ()
    await nothing_parked(transport)


async def test_stock_given_a_product_that_exists_passes_and_leaves_its_levels_as_they_were(
    transport: RabbitTransport, redis: Redis, namespace: str
) -> None:
    shelves = StockService(redis, namespace)
    await shelves.set_product("apple", quantity=10, price=Decimal("5.00"))
    await ParticipantRuntime(stock, transport, redis, namespace=namespace).run()
    steps = learn_steps(
        "stock",
        [ORDER],
        payloads={
            "ReserveStock": {"items": [{"product_id": "apple", "quantity": 2}]},
            "ReleaseStock": {"product_ids": ["apple"]},
            "ConfirmStock": {"product_ids": ["apple"]},
        },
        models=COMMANDS,
    )
    report = await check(transport, "stock", steps)
    assert_conforms(report)
    reserve = {c.case: c for c in report.cases if c.command == "ReserveStock"}
    assert reserve["repeat"].reason.startswith("both StockReserved")
    assert reserve["compensation_first"].reason == "refused (reservation_released)"
    # Every reservation it made, it released: nothing reserved, nothing sold.
    apple = await shelves.product("apple")
    assert apple is not None and (apple.available, apple.reserved, apple.sold) == (10, 0, 0)


async def test_a_foreign_participant_on_plain_amqp_passes_with_payloads_from_its_templates(
    transport: RabbitTransport,
) -> None:
    courier = Courier(transport.topology.namespace)
    steps = learn_steps("courier", [read_definition(DELIVERY)])
    assert steps[0].action.payload == {
        "address": "conformance-check",
        "for": "conformance-check@example.com",
    }
    with running(courier):
        report = await check(transport, "courier", steps)
    assert_conforms(report)
    assert {c.outcome for c in report.cases} == {"passed"}, report.lines()
    await nothing_parked(transport)
    # Each booking the check made, it cancelled.
    booked = [k for k in courier.work if k.endswith(":book_courier:execute")]
    cancelled = {k.rsplit(":", 1)[0] for k in courier.work if k.endswith(":compensate")}
    assert booked and {k.rsplit(":", 1)[0] for k in booked} <= cancelled


# --- participants that break one rule each ----------------------------------------


class Forgetful(Courier):
    """Does the work again for every repeat: a new booking each time."""

    def remembered(self, key: str) -> dict[str, Any] | None:
        return None


class Deaf(Courier):
    """Acks a command of a type it does not know, and answers nothing."""

    def answers(self, command: dict[str, Any]) -> bool:
        return command["type"] != UNKNOWN_COMMAND


class Careless(Courier):
    """Acks a body it cannot read, silently."""

    async def dead_letter(self, message: aio_pika.abc.AbstractIncomingMessage, reason: str) -> None:
        await message.ack()


class Rejecting(Courier):
    """Rejects a body it cannot read: RabbitMQ dead-letters it, with no reason of its own."""

    async def dead_letter(self, message: aio_pika.abc.AbstractIncomingMessage, reason: str) -> None:
        await message.reject(requeue=False)


class Markerless(Courier):
    """Forgets a compensation that came first: the late command goes through."""

    def refuses_late(self, unit: str) -> bool:
        return False


class Hedging(Courier):
    """Refuses a command after its compensation, but as transient: try again later."""

    def outcome(self, command: dict[str, Any], key: str) -> dict[str, Any]:
        answer = super().outcome(command, key)
        if answer["payload"].get("reason") == "compensated_before":
            answer["payload"]["transient"] = True
        return answer


class Misnaming(Courier):
    """Answers naming no command as its cause."""

    def reply_to(self, command: dict[str, Any], first: dict[str, Any]) -> dict[str, Any]:
        return {**first, "causation_id": None}


BROKEN = [
    (Forgetful, {("repeat", "BookCourier"), ("retry", "BookCourier")}),
    (Deaf, {("unknown_command", UNKNOWN_COMMAND)}),
    (Careless, {("malformed_envelope", "BookCourier"), ("not_json", None)}),
    (Rejecting, {("malformed_envelope", "BookCourier"), ("not_json", None)}),
    (Markerless, {("compensation_first", "BookCourier"), ("compensation_first", "Insure")}),
    (Hedging, {("compensation_first", "BookCourier"), ("compensation_first", "Insure")}),
    (Misnaming, {("ids", None)}),
]


@pytest.mark.parametrize(("kind", "cases"), BROKEN, ids=[k.__name__ for k, _ in BROKEN])
async def test_a_participant_that_breaks_a_rule_fails_that_case_and_no_other(
    transport: RabbitTransport, kind: type[Courier], cases: set[tuple[str, str | None]]
) -> None:
    with running(kind(transport.topology.namespace)):
        # Short: where a case waits for what never comes, it waits this long.
        report = await check(transport, "courier", COURIER_STEPS, within=3)
    assert not report.passed
    assert failed(report) == cases, report.lines()
    with pytest.raises(AssertionError, match="courier breaks the wire protocol"):
        assert_conforms(report)
    # What it caused in the dead letters (RabbitMQ's own too), it took out.
    assert report.left_behind == ()
    await nothing_parked(transport)


async def test_the_reasons_say_what_is_wrong(transport: RabbitTransport) -> None:
    with running(Rejecting(transport.topology.namespace)):
        report = await check(transport, "courier", COURIER_STEPS, within=3)
    reasons = {c.case: c.reason for c in report.cases}
    assert reasons["not_json"] == (
        "dead-lettered by RabbitMQ (rejected): say why in header x-saga-dead-reason"
    )
    with running(Forgetful(transport.topology.namespace)):
        report = await check(transport, "courier", COURIER_STEPS)
    repeat = next(c for c in report.cases if c.case == "repeat")
    assert repeat.reason.startswith('first CourierBooked {"booking": "b-')
    assert ', then CourierBooked {"booking": "b-' in repeat.reason


async def test_a_participant_that_answers_nothing_is_one_error_not_a_table(
    transport: RabbitTransport,
) -> None:
    class Mute(Courier):
        def answers(self, command: dict[str, Any]) -> bool:
            return False

    with running(Mute(transport.topology.namespace)), pytest.raises(CheckError) as raised:
        await check(transport, "courier", COURIER_STEPS, within=1)
    assert str(raised.value) == (
        f"courier did not answer within 1s: is it running, in namespace "
        f"{transport.topology.namespace!r}?"
    )


async def test_a_participant_nobody_runs_is_one_error(transport: RabbitTransport) -> None:
    with pytest.raises(CheckError, match=r"nothing consumes t\w+\.stock: start stock first"):
        await check(transport, "stock", named_steps(["CancelOrder"], models=COMMANDS))
    with pytest.raises(CheckError, match=r"no queue t\w+\.nobody: no definition names nobody"):
        await check(transport, "nobody", [StepSample(Action("Ping"))])


async def test_the_documented_test_passes_against_the_example_carrier(
    transport: RabbitTransport, redis: Redis, namespace: str
) -> None:
    from examples.shipping.participant import carrier

    text = (Path(__file__).parents[2] / "docs" / "wire-protocol.md").read_text()
    after = text.split("**From a test.**", 1)[1]
    code = after.split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace('"amqp://guest:guest@127.0.0.1:5672/"', repr(RABBITMQ_URL))
    scope: dict[str, Any] = {}
    exec(compile(code, "docs/wire-protocol.md", "exec"), scope)
    await ParticipantRuntime(carrier, transport, redis, namespace=namespace).run()
    await scope["test_the_carrier_keeps_the_wire_protocol"](namespace)
