"""The stock, payment and order participants' effects on a real Redis, each run by the
SDK's runtime: all-or-nothing, at most once, and the replies they give."""

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

import pytest
from redis.asyncio import Redis

from contracts import Envelope
from contracts.topology import Topology
from saga.memory import InMemoryTransport
from saga.participant import Participant, ParticipantRuntime
from saga.settings import DEFAULT_RETENTION
from saga.transport import ACK, Delivery
from services.order import OrderService, order_id_for
from services.order import order as order_participant
from services.payment import PaymentService
from services.payment import payment as payment_participant
from services.stock import StockService
from services.stock import stock as stock_participant

pytestmark = pytest.mark.either_redis

_ids = itertools.count()
NOW = datetime(2026, 1, 1, tzinfo=UTC)
S = TypeVar("S")


class Replies(InMemoryTransport):
    """The in-memory transport, keeping the replies a participant publishes."""

    def __init__(self, namespace: str) -> None:
        super().__init__(Topology(namespace))
        self.sent: list[Envelope] = []

    async def publish_reply(self, envelope: Envelope) -> None:
        self.sent.append(envelope)


@dataclass
class Running(Generic[S]):
    """A shop participant run by the SDK's runtime, and the operator's side of its data."""

    store: S
    runtime: ParticipantRuntime
    replies: Replies

    async def handle(self, envelope: Envelope) -> tuple[str, dict[str, Any]]:
        """The reply the participant gives to the command, as delivered."""
        assert await self.runtime.handle(Delivery(body=envelope.to_bytes())) == ACK
        reply = self.replies.sent.pop()
        assert reply.causation_id == envelope.message_id
        return reply.type, reply.payload


def running(
    participant: Participant,
    store: S,
    redis: Redis,
    namespace: str,
    *,
    retention: float = DEFAULT_RETENTION,
) -> Running[S]:
    replies = Replies(namespace)
    runtime = ParticipantRuntime(
        participant, replies, redis, namespace=namespace, retention=retention, clock=lambda: NOW
    )
    return Running(store, runtime, replies)


def command(
    kind: str, payload: dict[str, Any], *, saga: str = "s1", key: str | None = None
) -> Envelope:
    return Envelope(
        message_id=f"m{next(_ids)}",
        saga_id=saga,
        correlation_id=saga,
        type=kind,
        sent_at=datetime.now(UTC),
        payload=payload,
        idempotency_key=key or f"{saga}:{kind}",
    )


@pytest.fixture
async def stock(redis: Redis, namespace: str) -> Running[StockService]:
    service = StockService(redis, namespace)
    await service.set_product("p1", quantity=5, price=Decimal("2.50"))
    await service.set_product("p2", quantity=1, price=Decimal("10.00"))
    return running(stock_participant, service, redis, namespace)


async def levels(stock: Running[StockService], pid: str) -> tuple[int, int, int]:
    product = await stock.store.product(pid)
    assert product is not None
    return product.available, product.reserved, product.sold


def reserve(*items: tuple[str, int], saga: str = "s1", **kw: Any) -> Envelope:
    return command(
        "ReserveStock",
        {"items": [{"product_id": p, "quantity": q, **kw} for p, q in items]},
        saga=saga,
    )


async def test_stock_levels_and_prices_are_bounded_where_they_are_set(
    stock: Running[StockService],
) -> None:
    # The most a level may be is one Redis counts with and Lua's doubles hold exactly.
    await stock.store.set_product("p1", quantity=1_000_000_000_000, price=Decimal("1000.00"))
    kind, reserved = await stock.handle(reserve(("p1", 1_000_000)))
    assert (kind, reserved["amount"]) == ("StockReserved", "1000000000.00")
    assert await levels(stock, "p1") == (999_999_000_000, 1_000_000, 0)
    # The levels are written back as whole numbers (not as Lua prints a number).
    confirm = command("ConfirmStock", {"product_ids": ["p1"]})
    assert await stock.handle(confirm) == ("StockConfirmed", {"confirmed": True})
    assert await levels(stock, "p1") == (999_999_000_000, 0, 1_000_000)
    refusals = [
        ({"quantity": 10**23, "price": Decimal("1.00")}, "at most 1,000,000,000,000"),
        ({"quantity": -1, "price": Decimal("1.00")}, "at least 0"),
        ({"quantity": 1, "price": Decimal("1000000000.01")}, "cannot exceed"),
        ({"quantity": 1, "price": Decimal("0")}, "more than 0"),
    ]
    for change, message in refusals:
        with pytest.raises(ValueError, match=message):
            await stock.store.set_product("p2", **change)
    assert await levels(stock, "p2") == (1, 0, 0)  # as it was
    await stock.store.set_product("p2", quantity=0, price=Decimal("1000000000.00"))


async def test_levels_are_written_back_as_whole_numbers(stock: Running[StockService]) -> None:
    # Fifteen digits, as a level set by hand may have (past `set_product`'s bound, still
    # countable): Lua would print 199999999999999 as 2e+14.
    await stock.store._redis.hset(stock.store._product_key("p1"), "available", 2 * 10**14)
    kind, _ = await stock.handle(reserve(("p1", 1)))
    assert kind == "StockReserved"
    assert await levels(stock, "p1") == (2 * 10**14 - 1, 1, 0)


async def test_a_reservation_prices_the_items_and_holds_them(stock: Running[StockService]) -> None:
    kind, payload = await stock.handle(reserve(("p1", 2), ("p2", 1), ("p1", 1)))
    assert kind == "StockReserved"
    assert payload["amount"] == "17.50"
    assert payload["items"][0] == {"product_id": "p1", "quantity": 2, "price": "2.50"}
    assert await levels(stock, "p1") == (2, 3, 0)
    assert await levels(stock, "p2") == (0, 1, 0)


@pytest.mark.parametrize(
    ("items", "reason"),
    [
        ([("p1", 2), ("nope", 1)], "unknown_product"),
        ([("p1", 2), ("p2", 2)], "insufficient_stock"),
        ([("p1", 3), ("p1", 3)], "insufficient_stock"),  # the same product twice adds up
    ],
)
async def test_a_reservation_is_all_or_nothing(
    stock: Running[StockService], items: list[tuple[str, int]], reason: str
) -> None:
    kind, payload = await stock.handle(reserve(*items))
    assert (kind, payload["reason"]) == ("CommandFailed", reason)
    assert await levels(stock, "p1") == (5, 0, 0)
    assert await levels(stock, "p2") == (1, 0, 0)


async def test_a_stated_price_must_be_the_shops(stock: Running[StockService]) -> None:
    kind, payload = await stock.handle(reserve(("p1", 1), unit_price="2.00"))
    assert (kind, payload["reason"]) == ("CommandFailed", "price_mismatch")
    assert "2.50" in payload["detail"]
    kind, _ = await stock.handle(reserve(("p1", 1), unit_price="2.50", saga="s2"))
    assert kind == "StockReserved"


async def test_a_repeated_command_gets_the_same_reply_and_no_second_effect(
    stock: Running[StockService],
) -> None:
    envelope = reserve(("p1", 2))
    first = await stock.handle(envelope)
    again = await stock.handle(envelope.model_copy(update={"message_id": "other"}))
    assert first == again
    assert await levels(stock, "p1") == (3, 2, 0)


async def test_release_gives_back_and_commit_sells(stock: Running[StockService]) -> None:
    await stock.handle(reserve(("p1", 2), saga="a"))
    await stock.handle(reserve(("p1", 1), saga="b"))
    assert await stock.handle(command("ReleaseStock", {"product_ids": ["p1"]}, saga="a")) == (
        "StockReleased",
        {"released": True},
    )
    assert await stock.handle(command("ConfirmStock", {"product_ids": ["p1"]}, saga="b")) == (
        "StockConfirmed",
        {"confirmed": True},
    )
    assert await levels(stock, "p1") == (4, 0, 1)
    # A sale cannot be released afterwards.
    kind, payload = await stock.handle(
        command("ReleaseStock", {"product_ids": ["p1"]}, saga="b", key="b:again")
    )
    assert (kind, payload["reason"]) == ("CommandFailed", "reservation_confirmed")


async def test_a_release_before_the_reservation_refuses_the_late_reservation(
    stock: Running[StockService],
) -> None:
    assert await stock.handle(command("ReleaseStock", {"product_ids": ["p1"]}, saga="late")) == (
        "StockReleased",
        {"released": False},
    )
    kind, payload = await stock.handle(reserve(("p1", 1), saga="late"))
    assert (kind, payload["reason"]) == ("CommandFailed", "reservation_released")
    assert await levels(stock, "p1") == (5, 0, 0)


@pytest.fixture
async def payment(redis: Redis, namespace: str) -> Running[PaymentService]:
    service = PaymentService(redis, namespace)
    await service.deposit("Ann@Example.com", Decimal("20.00"))
    return running(payment_participant, service, redis, namespace)


def charge(amount: str, saga: str = "s1") -> Envelope:
    return command("ChargePayment", {"customer": "ann@example.com", "amount": amount}, saga=saga)


async def test_a_charge_and_its_refund_are_in_the_ledger(payment: Running[PaymentService]) -> None:
    assert await payment.handle(charge("12.30")) == (
        "PaymentCharged",
        {"amount": "12.30"},
    )
    assert (await payment.store.account("ann@example.com")).balance == Decimal("7.70")
    refund = command("RefundPayment", {"customer": "ann@example.com"})
    assert await payment.handle(refund) == ("PaymentRefunded", {"amount": "12.30"})
    account = await payment.store.account("ann@example.com")
    assert account.balance == Decimal("20.00")
    assert [(e.kind, e.amount, e.saga_id) for e in account.ledger] == [
        ("charge", Decimal("12.30"), "s1"),
        ("refund", Decimal("12.30"), "s1"),
    ]


async def test_a_deposit_may_not_raise_a_balance_past_its_bound(
    payment: Running[PaymentService],
) -> None:
    await payment.store.deposit("ann@example.com", Decimal("1000000000.00"))
    for _ in range(98):
        await payment.store.deposit("ann@example.com", Decimal("1000000000.00"))
    # 99,000,000,020.00 now; the bound is 100,000,000,000.00.
    with pytest.raises(ValueError, match=r"at most 100,000,000,000\.00"):
        await payment.store.deposit("ann@example.com", Decimal("1000000000.00"))
    account = await payment.store.account("ann@example.com")
    assert account.balance == Decimal("99000000020.00")
    account = await payment.store.deposit("ann@example.com", Decimal("999999980.00"))
    assert account.balance == Decimal("100000000000.00")
    assert await payment.handle(charge("1000000000.00")) == (
        "PaymentCharged",
        {"amount": "1000000000.00"},
    )


async def test_too_little_money_charges_nothing(payment: Running[PaymentService]) -> None:
    kind, payload = await payment.handle(charge("20.01"))
    assert (kind, payload["reason"]) == ("CommandFailed", "insufficient_funds")
    account = await payment.store.account("ann@example.com")
    assert account.balance == Decimal("20.00") and account.ledger == []


async def test_a_repeated_charge_charges_once(payment: Running[PaymentService]) -> None:
    envelope = charge("5.00")
    await payment.handle(envelope)
    await payment.handle(envelope.model_copy(update={"message_id": "other"}))
    assert (await payment.store.account("ann@example.com")).balance == Decimal("15.00")


async def test_a_refund_without_a_charge_refuses_a_late_charge(
    payment: Running[PaymentService],
) -> None:
    refund = command("RefundPayment", {"customer": "ann@example.com"}, saga="late")
    assert await payment.handle(refund) == ("PaymentRefunded", {"amount": "0.00"})
    kind, payload = await payment.handle(charge("5.00", saga="late"))
    assert (kind, payload["reason"]) == ("CommandFailed", "payment_refunded")
    assert (await payment.store.account("ann@example.com")).balance == Decimal("20.00")


@pytest.fixture
async def orders(redis: Redis, namespace: str) -> Running[OrderService]:
    service = OrderService(redis, namespace)
    await service.add_vendor("Shop@Example.com")
    return running(order_participant, service, redis, namespace)


def create(vendor: str = "shop@example.com", saga: str = "s1") -> Envelope:
    return command(
        "CreateOrder",
        {
            "customer": "ann@example.com",
            "vendor": vendor,
            "items": [{"product_id": "p1", "quantity": 2, "price": "2.50"}],
            "amount": "5.00",
            "delivery_address": "1 Main Street",
            "payment_method": "Credit Card",
        },
        saga=saga,
    )


async def test_an_order_is_recorded_and_cancelled(orders: Running[OrderService]) -> None:
    kind, payload = await orders.handle(create())
    assert kind == "OrderCreated" and payload["order_id"] == order_id_for("s1")
    order = await orders.store.order(payload["order_id"])
    assert order is not None and order.status == "created" and order.amount == Decimal("5.00")
    assert await orders.handle(command("CancelOrder", {})) == (
        "OrderCancelled",
        {"order_id": payload["order_id"]},
    )
    cancelled = await orders.store.order(payload["order_id"])
    assert cancelled is not None and cancelled.status == "cancelled"
    assert [o.order_id for o in await orders.store.orders()] == [payload["order_id"]]


async def test_an_unknown_vendor_gets_no_order(orders: Running[OrderService]) -> None:
    kind, payload = await orders.handle(create(vendor="stranger@example.com"))
    assert (kind, payload["reason"]) == ("CommandFailed", "unknown_vendor")
    assert await orders.store.orders() == []


async def test_a_cancel_before_the_create_refuses_the_late_create(
    orders: Running[OrderService],
) -> None:
    assert await orders.handle(command("CancelOrder", {}, saga="late")) == (
        "OrderCancelled",
        {"order_id": None},
    )
    kind, payload = await orders.handle(create(saga="late"))
    assert (kind, payload["reason"]) == ("CommandFailed", "order_cancelled")


async def test_a_release_must_name_the_reserved_products(stock: Running[StockService]) -> None:
    await stock.handle(reserve(("p1", 2), ("p2", 1), saga="x"))
    release = command("ReleaseStock", {"product_ids": ["p1"]}, saga="x")
    kind, payload = await stock.handle(release)
    assert (kind, payload["reason"]) == ("CommandFailed", "protocol_error")
    assert await levels(stock, "p1") == (3, 2, 0)  # nothing given back by halves


async def test_answers_and_settled_reservations_are_kept_for_the_retention(
    redis: Redis, namespace: str
) -> None:
    stock = running(
        stock_participant, StockService(redis, namespace), redis, namespace, retention=3600
    )
    await stock.store.set_product("p1", quantity=5, price=Decimal("2.50"))
    await stock.handle(reserve(("p1", 2), saga="a"))
    prefix = f"{namespace}:stock:{{stock}}"
    handled = f"{prefix}:handled:a:ReserveStock"
    reservation = f"{prefix}:reservation:a"
    assert 3590 < await redis.ttl(handled) <= 3600
    assert await redis.ttl(reservation) == -1  # held: kept until released or confirmed
    await stock.handle(command("ConfirmStock", {"product_ids": ["p1"]}, saga="a"))
    assert 3590 < await redis.ttl(reservation) <= 3600
    assert await redis.ttl(f"{prefix}:product:p1") == -1  # the stock itself stays


async def test_what_a_compensation_that_came_first_leaves_is_kept_for_the_retention(
    redis: Redis, namespace: str
) -> None:
    payment = running(
        payment_participant, PaymentService(redis, namespace), redis, namespace, retention=3600
    )
    orders = running(
        order_participant, OrderService(redis, namespace), redis, namespace, retention=3600
    )
    refund = command("RefundPayment", {"customer": "ann@example.com"}, saga="early")
    assert (await payment.handle(refund))[0] == "PaymentRefunded"
    assert (await orders.handle(command("CancelOrder", {}, saga="early")))[0] == "OrderCancelled"
    left = [key async for key in redis.scan_iter(match=f"{namespace}:*")]
    # The answers, the SDK's markers and the services' own: nothing kept for ever.
    assert len(left) >= 6
    assert {key: 3590 < await redis.ttl(key) <= 3600 for key in left} == dict.fromkeys(left, True)
