"""The participant SDK on real Redis and RabbitMQ: each rule of the wire protocol it
carries for its user, for a handler whose effect is outside Redis (leased) and for one
whose effect is an EffectScript (atomic)."""

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest
from prometheus_client import REGISTRY
from pydantic import BaseModel
from redis.asyncio import Redis
from structlog.testing import capture_logs

from contracts.envelope import Envelope
from contracts.messages import CommandFailed
from saga.connections import redis_client
from saga.handling import run_handler
from saga.participant import (
    Compensated,
    Context,
    EffectScript,
    EffectUnknown,
    Participant,
    ParticipantRuntime,
    Refused,
    Transient,
)
from saga.participant.records import BUSY
from saga.rabbit import RabbitTransport
from saga.settings import Settings
from saga.transport import ACK, DeadLetter, Delivery
from tests.nodes import RedisServer
from tests.waiting import eventually

pytestmark = pytest.mark.either_redis

NAME = "lab"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_ids = itertools.count()


class Book(BaseModel):
    """The leased command: its effect is a plain call (INCR), outside any script."""

    item: str
    transient_first: bool = False
    unknown: bool = False
    crash: bool = False


class Booked(BaseModel):
    booking: str


class Unbook(BaseModel):
    """Book's compensation, atomic: undoes the saga's effect, if any, in one script."""


class Reserve(BaseModel):
    """The atomic command: its effect and its reply written by one script."""

    item: str
    crash_after: bool = False


class Reserved(BaseModel):
    booking: str


class Release(BaseModel):
    """Reserve's compensation, leased: undoes the saga's effect, if any."""


class Released(BaseModel):
    released: bool


# KEYS: effects, closed. ARGV: item.
_RESERVE = EffectScript(
    """
if redis.call('EXISTS', KEYS[2]) == 1 then return refuse('closed', 'the lab is closed') end
local n = redis.call('INCR', KEYS[1])
return ok({booking = ARGV[1] .. '-' .. n})
""",
    reply=Reserved,
)
# KEYS: effects, undone.
_UNBOOK = EffectScript(
    """
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('INCR', KEYS[2]) end
return ok()
""",
    reply=Compensated,
)


@dataclass
class Lab:
    """A participant of the test's own, and what its handlers did."""

    participant: Participant
    calls: list[str] = field(default_factory=list)  # handler runs, by command type
    seen: list[Context] = field(default_factory=list)
    gate: asyncio.Event | None = None  # handlers wait here when set up
    gated: tuple[str, ...] = ("Book", "Unbook", "Reserve", "Release")  # which ones
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    after_effect: Callable[[], Awaitable[None]] | None = None


def make_lab(*, lease: float = 30.0) -> Lab:
    lab = Lab(Participant(NAME, lease=lease))
    p = lab.participant

    async def arrive(kind: str, ctx: Context) -> None:
        lab.calls.append(kind)
        lab.seen.append(ctx)
        lab.entered.set()
        if lab.gate is not None and kind in lab.gated:
            await lab.gate.wait()

    @p.command(Book, reply=Booked)
    async def book(command: Book, ctx: Context) -> Booked:
        await arrive("Book", ctx)
        if await ctx.redis.exists(ctx.key("closed")):
            raise Refused("closed", "the lab is closed")
        if (
            command.transient_first
            and await ctx.redis.incr(ctx.key("tries", ctx.idempotency_key)) == 1
        ):
            raise Transient("busy", "try again")
        if command.unknown:
            raise EffectUnknown("timeout", "the lab did not answer")
        if command.crash:
            raise ValueError("the lab is on fire")
        n = await ctx.redis.incr(ctx.key("effects", ctx.saga_id))
        if lab.after_effect is not None:
            await lab.after_effect()
        return Booked(booking=f"{command.item}-{n}")

    @book.compensation(Unbook, atomic=True)
    async def unbook(command: Unbook, ctx: Context) -> None:
        await arrive("Unbook", ctx)
        await ctx.atomically(
            _UNBOOK, keys=[ctx.key("effects", ctx.saga_id), ctx.key("undone", ctx.saga_id)]
        )

    @p.command(Reserve, reply=Reserved, atomic=True)
    async def reserve(command: Reserve, ctx: Context) -> Reserved:
        await arrive("Reserve", ctx)
        reserved = await ctx.atomically(
            _RESERVE, keys=[ctx.key("effects", ctx.saga_id), ctx.key("closed")], args=[command.item]
        )
        if command.crash_after:
            raise ValueError("crashed after the script")
        return reserved

    @reserve.compensation(Release, reply=Released)
    async def release(command: Release, ctx: Context) -> Released:
        await arrive("Release", ctx)
        done = int(await ctx.redis.get(ctx.key("effects", ctx.saga_id)) or 0) > 0
        if done:
            await ctx.redis.incr(ctx.key("undone", ctx.saga_id))
        return Released(released=done)

    return lab


# The two kinds of handler, each with its compensation (of the other kind).
PAIRS = {"leased": ("Book", "Unbook", "Booked"), "atomic": ("Reserve", "Release", "Reserved")}


def command(
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    saga: str = "tenant:s-1",
    step: str = "book",
    action: str = "execute",
    key: str | None = None,
    traceparent: str | None = None,
) -> Envelope:
    return Envelope(
        message_id=f"m{next(_ids)}",
        saga_id=saga,
        correlation_id=saga,
        type=kind,
        sent_at=NOW,
        payload={"item": "x"} if payload is None and kind in ("Book", "Reserve") else payload or {},
        idempotency_key=key or f"{saga}:{step}:{action}",
        traceparent=traceparent,
    )


def delivered(envelope: Envelope, **headers: Any) -> Delivery:
    return Delivery(body=envelope.to_bytes(), headers=headers)


class Replies:
    """The replies the orchestrator's queue got, in order."""

    def __init__(self, channel: aio_pika.abc.AbstractChannel, queue: str) -> None:
        self._channel, self._queue = channel, queue

    async def next(self) -> Envelope:
        queue = await self._channel.get_queue(self._queue, ensure=False)
        message = await eventually(
            lambda: queue.get(no_ack=True, fail=False), what="a reply", within=20
        )
        assert message is not None
        return Envelope.from_bytes(message.body)

    async def left(self) -> int:
        queue = await self._channel.declare_queue(self._queue, passive=True)
        return int(queue.declaration_result.message_count or 0)


@pytest.fixture
async def replies(
    amqp: aio_pika.abc.AbstractConnection, transport: RabbitTransport, namespace: str
) -> AsyncIterator[Replies]:
    channel = await amqp.channel()
    yield Replies(channel, transport.topology.orchestrator_queue)
    # The lab's queue is not one drop_namespace knows of (no definition names it).
    cleanup = await amqp.channel()
    await cleanup.queue_delete(transport.topology.participant_queue(NAME))


def runtime_of(
    lab: Lab, transport: RabbitTransport, redis: Redis, namespace: str
) -> ParticipantRuntime:
    return ParticipantRuntime(
        lab.participant, transport, redis, namespace=namespace, clock=lambda: NOW
    )


async def effects(
    redis: Redis, lab: Lab, namespace: str, saga: str = "tenant:s-1"
) -> tuple[int, int]:
    """How often the saga's effect was done, and undone."""
    done = await redis.get(lab.participant.key(namespace, "effects", saga))
    undone = await redis.get(lab.participant.key(namespace, "undone", saga))
    return int(done or 0), int(undone or 0)


# -- one effect per key, the same reply for every repeat ---------------------------------------


@pytest.mark.parametrize("kind", PAIRS)
async def test_a_command_delivered_twice_gets_the_same_reply_and_one_effect(
    kind: str, redis: Redis, namespace: str, transport: RabbitTransport, replies: Replies
) -> None:
    lab = make_lab()
    runtime = runtime_of(lab, transport, redis, namespace)
    do, _, succeeded = PAIRS[kind]
    sent = command(do)
    assert await runtime.handle(delivered(sent)) == ACK
    assert await runtime.handle(delivered(sent)) == ACK
    first, second = await replies.next(), await replies.next()
    assert first == second  # the same envelope: the orchestrator knows it for a duplicate
    assert (first.type, first.payload) == (succeeded, {"booking": "x-1"})
    assert (first.causation_id, first.correlation_id, first.saga_id) == (
        sent.message_id,
        sent.saga_id,
        sent.saga_id,
    )
    assert await effects(redis, lab, namespace) == (1, 0)


@pytest.mark.parametrize("kind", PAIRS)
async def test_a_retry_under_the_same_key_gets_the_same_reply_naming_the_new_command(
    kind: str, redis: Redis, namespace: str, transport: RabbitTransport, replies: Replies
) -> None:
    lab = make_lab()
    runtime = runtime_of(lab, transport, redis, namespace)
    do, _, succeeded = PAIRS[kind]
    first_try, retry = command(do), command(do)
    assert first_try.idempotency_key == retry.idempotency_key
    await runtime.handle(delivered(first_try))
    await runtime.handle(delivered(retry))
    first, second = await replies.next(), await replies.next()
    assert (
        (first.type, first.payload)
        == (second.type, second.payload)
        == (
            succeeded,
            {"booking": "x-1"},
        )
    )
    assert (first.causation_id, second.causation_id) == (first_try.message_id, retry.message_id)
    assert await effects(redis, lab, namespace) == (1, 0)
    # Another step of the saga is other work.
    await runtime.handle(delivered(command(do, step="book_again")))
    assert (await replies.next()).payload == {"booking": "x-2"}


@pytest.mark.parametrize("kind", PAIRS)
async def test_duplicates_on_two_runtimes_at_once_have_one_effect(
    kind: str, redis: Redis, namespace: str, transport: RabbitTransport, replies: Replies
) -> None:
    lab = make_lab()
    lab.gate = asyncio.Event()
    one, other = (runtime_of(lab, transport, redis, namespace) for _ in range(2))
    told: list[str] = []
    begin = other._records.begin

    async def spied(*args: Any) -> str:
        told.append(answer := await begin(*args))
        return answer

    other._records.begin = spied  # type: ignore[method-assign]
    do, _, _ = PAIRS[kind]
    first = asyncio.create_task(one.handle(delivered(command(do))))
    await lab.entered.wait()
    second = asyncio.create_task(other.handle(delivered(command(do))))
    if kind == "leased":
        # The second handling finds the step's lease held by the first, and waits.
        await eventually(lambda: _value(told.count(BUSY)), until=lambda n: n >= 2, what="busy")
    else:
        # No lease: both handlers run, up to their scripts, which Redis runs one by one.
        await eventually(lambda: _value(len(lab.calls)), until=lambda n: n == 2, what="2 calls")
    lab.gate.set()
    assert await asyncio.gather(first, second) == [ACK, ACK]
    a, b = await replies.next(), await replies.next()
    assert a.payload == b.payload == {"booking": "x-1"}
    assert await effects(redis, lab, namespace) == (1, 0)
    # Leased: the second handling waited for the first's lease, then found its reply.
    assert lab.calls == (["Book"] if kind == "leased" else ["Reserve", "Reserve"])


async def _value(value: int) -> int:
    return value


# -- a compensation that comes first -----------------------------------------------------------


@pytest.mark.parametrize("kind", PAIRS)
async def test_a_compensation_that_comes_first_makes_the_late_command_refuse(
    kind: str, redis: Redis, namespace: str, transport: RabbitTransport, replies: Replies
) -> None:
    lab = make_lab()
    runtime = runtime_of(lab, transport, redis, namespace)
    do, undo, _ = PAIRS[kind]
    await runtime.handle(delivered(command(undo, action="compensate")))
    compensated = await replies.next()
    assert compensated.type == ("Compensated" if kind == "leased" else "Released")
    late, again = command(do), command(do)
    await runtime.handle(delivered(late))
    await runtime.handle(delivered(again))
    for refusal in (await replies.next(), await replies.next()):
        assert refusal.type == "CommandFailed"
        failure = CommandFailed.model_validate(refusal.payload)
        assert failure.reason == "compensated_first"
        assert not failure.transient and not failure.effect_unknown
    assert await effects(redis, lab, namespace) == (0, 0)
    assert lab.calls == ([undo] if kind == "leased" else [undo, do, do])
    # The same step of another saga is not refused.
    await runtime.handle(delivered(command(do, saga="tenant:s-2")))
    assert (await replies.next()).payload == {"booking": "x-1"}


async def test_the_late_refusal_s_reason_is_the_command_s_own_where_it_gives_one(
    redis: Redis, namespace: str, transport: RabbitTransport, replies: Replies
) -> None:
    participant = Participant(NAME)

    @participant.command(
        Book,
        reply=Booked,
        after_compensation=Refused("reservation_released", "this saga's reservation was released"),
    )
    async def book(command: Book, ctx: Context) -> Booked:
        raise AssertionError("a late command is not handled")

    @book.compensation(Unbook)
    async def unbook(command: Unbook, ctx: Context) -> None:
        return None

    runtime = ParticipantRuntime(participant, transport, redis, namespace=namespace)
    # A key of another shape: the command and its compensation meet by saga and command.
    await runtime.handle(delivered(command("Unbook", key="foreign-1")))
    await runtime.handle(delivered(command("Book", key="foreign-2")))
    assert (await replies.next()).type == "Compensated"
    refusal = await replies.next()
    assert (refusal.type, refusal.payload["reason"], refusal.payload["detail"]) == (
        "CommandFailed",
        "reservation_released",
        "this saga's reservation was released",
    )


async def test_a_compensation_waits_for_its_command_still_running(
    redis: Redis, namespace: str, transport: RabbitTransport, replies: Replies
) -> None:
    lab = make_lab()
    lab.gate, lab.gated = asyncio.Event(), ("Book",)
    runtime = runtime_of(lab, transport, redis, namespace)
    asked: list[str | None] = []
    records = runtime._records
    effect = records.effect

    async def spied(*args: Any) -> str | None:
        asked.append(answer := await effect(*args))
        return answer

    records.effect = spied  # type: ignore[method-assign]
    booking = asyncio.create_task(runtime.handle(delivered(command("Book"))))
    await lab.entered.wait()
    undoing = asyncio.create_task(runtime.handle(delivered(command("Unbook", action="compensate"))))
    # The compensation's script finds the step's lease held by the command, and waits.
    await eventually(lambda: _value(asked.count(BUSY)), until=lambda n: n >= 2, what="waiting")
    lab.gate.set()
    await asyncio.gather(booking, undoing)
    assert [(await replies.next()).type, (await replies.next()).type] == ["Booked", "Compensated"]
    assert await effects(redis, lab, namespace) == (1, 1)  # done, then undone


# -- what is stored, and what is not ---------------------------------------------------------


async def test_a_transient_failure_is_not_stored_so_the_retry_succeeds(
    redis: Redis, namespace: str, transport: RabbitTransport, replies: Replies
) -> None:
    lab = make_lab()
    runtime = runtime_of(lab, transport, redis, namespace)
    payload = {"item": "x", "transient_first": True}
    await runtime.handle(delivered(command("Book", payload)))
    failure = await replies.next()
    assert failure.type == "CommandFailed"
    assert (failure.payload["reason"], failure.payload["transient"]) == ("busy", True)
    await runtime.handle(delivered(command("Book", payload)))  # the saga's retry: same key
    assert ((await replies.next()).type, await effects(redis, lab, namespace)) == ("Booked", (1, 0))


@pytest.mark.parametrize("kind", PAIRS)
async def test_a_refusal_is_stored_so_a_retry_is_refused_again(
    kind: str, redis: Redis, namespace: str, transport: RabbitTransport, replies: Replies
) -> None:
    lab = make_lab()
    runtime = runtime_of(lab, transport, redis, namespace)
    do, _, succeeded = PAIRS[kind]
    closed = lab.participant.key(namespace, "closed")
    await redis.set(closed, "1")
    with capture_logs() as logs:
        await runtime.handle(delivered(command(do)))
    # A refusal is an answer, not the participant's error (an atomic handler's comes as
    # the Refused its script's stored refusal raises): nothing is logged as an error.
    assert [line["event"] for line in logs if line["log_level"] == "error"] == []
    await redis.delete(closed)  # what made it refuse is gone; the answer stands
    await runtime.handle(delivered(command(do)))
    for refusal in (await replies.next(), await replies.next()):
        assert (refusal.type, refusal.payload["reason"]) == ("CommandFailed", "closed")
        assert refusal.payload["detail"] == "the lab is closed"
    await runtime.handle(delivered(command(do, step="book_again")))  # new work is done
    assert (await replies.next()).type == succeeded


async def test_an_unknown_effect_is_not_stored_so_asking_again_runs_the_handler(
    redis: Redis, namespace: str, transport: RabbitTransport, replies: Replies
) -> None:
    lab = make_lab()
    runtime = runtime_of(lab, transport, redis, namespace)
    await runtime.handle(delivered(command("Book", {"item": "x", "unknown": True})))
    unknown = await replies.next()
    assert unknown.payload == {
        "reason": "timeout",
        "detail": "the lab did not answer",
        "transient": False,
        "effect_unknown": True,
    }
    await runtime.handle(delivered(command("Book", {"item": "x", "unknown": True})))
    assert (await replies.next()).payload == unknown.payload
    assert lab.calls == ["Book", "Book"]


async def test_a_handler_s_own_error_is_answered_participant_error_and_not_stored(
    redis: Redis, namespace: str, transport: RabbitTransport, replies: Replies
) -> None:
    lab = make_lab()
    runtime = runtime_of(lab, transport, redis, namespace)
    with capture_logs() as logs:
        await runtime.handle(delivered(command("Book", {"item": "x", "crash": True})))
    failure = await replies.next()
    assert failure.payload == {
        "reason": "participant_error",
        "detail": "ValueError: the lab is on fire",
        "transient": False,
        "effect_unknown": True,
    }
    assert [line["event"] for line in logs if line["log_level"] == "error"] == [
        "participant failed on a command"
    ]
    # Fixed (here: the same key without the fault), the step's next try is done.
    await runtime.handle(delivered(command("Book")))
    assert (await replies.next()).payload == {"booking": "x-1"}


async def test_a_reply_an_effect_script_stored_stands_whatever_the_handler_does_after(
    redis: Redis, namespace: str, transport: RabbitTransport, replies: Replies
) -> None:
    lab = make_lab()
    runtime = runtime_of(lab, transport, redis, namespace)
    with capture_logs() as logs:
        await runtime.handle(delivered(command("Reserve", {"item": "x", "crash_after": True})))
    assert [line["event"] for line in logs if line["log_level"] == "error"] == [
        "handler failed after its reply was stored"
    ]
    await runtime.handle(delivered(command("Reserve")))
    stored, again = await replies.next(), await replies.next()
    assert (
        (stored.type, stored.payload)
        == (again.type, again.payload)
        == (
            "Reserved",
            {"booking": "x-1"},
        )
    )


async def test_an_unknown_command_type_is_answered_unknown_command(
    redis: Redis, namespace: str, transport: RabbitTransport, replies: Replies
) -> None:
    runtime = runtime_of(make_lab(), transport, redis, namespace)

    def answered(reply: str) -> float:
        labels = {"participant": NAME, "command": "(unknown)", "reply": reply}
        return REGISTRY.get_sample_value("saga_commands_handled_total", labels) or 0.0

    before = answered("CommandFailed")
    sent = command("Teleport", {"to": "mars"})
    assert await runtime.handle(delivered(sent)) == ACK
    reply = await replies.next()
    assert (reply.type, reply.causation_id) == ("CommandFailed", sent.message_id)
    assert reply.payload == {
        "reason": "unknown_command",
        "detail": "lab does not take Teleport",
        "transient": False,
        "effect_unknown": False,
    }
    assert answered("CommandFailed") == before + 1


async def test_a_payload_the_command_s_model_refuses_is_answered_invalid_command(
    redis: Redis, namespace: str, transport: RabbitTransport, replies: Replies
) -> None:
    lab = make_lab()
    runtime = runtime_of(lab, transport, redis, namespace)
    await runtime.handle(delivered(command("Book", {"item": 12})))
    reply = await replies.next()
    assert (reply.type, reply.payload["reason"], lab.calls) == (
        "CommandFailed",
        "invalid_command",
        [],
    )
    assert "item" in reply.payload["detail"]


# -- leases ------------------------------------------------------------------------------


async def test_a_lease_left_by_a_handling_that_died_is_taken_once_it_expires(
    redis: Redis, namespace: str, transport: RabbitTransport, replies: Replies
) -> None:
    lab = make_lab(lease=0.3)
    runtime = runtime_of(lab, transport, redis, namespace)
    lease = lab.participant.key(namespace, "lease", "tenant:s-1:book")
    await redis.set(lease, "a-handling-that-died", px=300)
    answers: list[str] = []
    begin = runtime._records.begin

    async def spied(*args: Any) -> str:
        answers.append(answer := await begin(*args))
        return answer

    runtime._records.begin = spied  # type: ignore[method-assign]
    assert await runtime.handle(delivered(command("Book"))) == ACK
    assert answers[0] == BUSY and answers[-1] == "go"
    assert (await replies.next()).payload == {"booking": "x-1"}
    assert not await redis.exists(lease)  # let go once the reply was stored


async def test_a_handler_running_longer_than_the_lease_keeps_it(
    redis: Redis, namespace: str, transport: RabbitTransport, replies: Replies
) -> None:
    lab = make_lab(lease=0.3)
    lab.gate = asyncio.Event()
    one, other = (runtime_of(lab, transport, redis, namespace) for _ in range(2))
    renewed: list[bool] = []
    renew = one._records.renew

    async def spied(*args: Any) -> bool:
        renewed.append(kept := await renew(*args))
        return kept

    one._records.renew = spied  # type: ignore[method-assign]
    first = asyncio.create_task(one.handle(delivered(command("Book"))))
    await lab.entered.wait()
    # Renewed every 0.1 s: four renewals outlast the lease's own 0.3 s.
    await eventually(lambda: _value(len(renewed)), until=lambda n: n >= 4, what="renewals")
    second = asyncio.create_task(other.handle(delivered(command("Book"))))
    await eventually(lambda: _value(len(renewed)), until=lambda n: n >= 7, what="more renewals")
    lab.gate.set()
    await asyncio.gather(first, second)
    assert all(renewed) and lab.calls == ["Book"]
    assert (await replies.next()).payload == (await replies.next()).payload == {"booking": "x-1"}


# -- the context ----------------------------------------------------------------------------


async def test_the_context_carries_the_command_s_ids_trace_clock_and_bound_log(
    redis: Redis, namespace: str, transport: RabbitTransport, replies: Replies
) -> None:
    lab = make_lab()
    runtime = runtime_of(lab, transport, redis, namespace)
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    sent = command("Release", key="tenant:s-1:reserve:compensate:replay2", traceparent=trace)
    with capture_logs() as logs:
        await runtime.handle(delivered(sent, **{"x-delivery-count": 3}))
    ctx = lab.seen[0]
    assert (ctx.participant, ctx.namespace, ctx.saga_id, ctx.message_id) == (
        NAME,
        namespace,
        "tenant:s-1",
        sent.message_id,
    )
    assert (ctx.idempotency_key, ctx.step, ctx.action, ctx.replay) == (
        "tenant:s-1:reserve:compensate:replay2",
        "reserve",
        "compensate",
        2,
    )
    assert (ctx.delivery_count, ctx.traceparent, ctx.trace_id, ctx.now) == (
        3,
        trace,
        "0af7651916cd43dd8448eb211c80319c",
        NOW,
    )
    assert ctx.key("a", "b") == f"{namespace}:lab:{{lab}}:a:b"
    reply = await replies.next()
    assert reply.traceparent is not None and reply.traceparent.split("-")[1] == ctx.trace_id
    [handled] = [line for line in logs if line["event"] == "command handled"]
    assert {
        k: handled[k]
        for k in (
            "saga_id",
            "message_id",
            "idempotency_key",
            "step",
            "action",
            "replay",
            "trace_id",
            "outcome",
        )
    } == {
        "saga_id": "tenant:s-1",
        "message_id": sent.message_id,
        "idempotency_key": "tenant:s-1:reserve:compensate:replay2",
        "step": "reserve",
        "action": "compensate",
        "replay": 2,
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "outcome": "Released",
    }


# -- over the broker: dead letters, and the reply before the ack ----------------------------------


async def test_a_body_that_is_no_envelope_is_dead_lettered_with_its_reason_and_the_runtime_goes_on(
    redis: Redis,
    namespace: str,
    transport: RabbitTransport,
    replies: Replies,
    amqp: aio_pika.abc.AbstractConnection,
) -> None:
    lab = make_lab()
    runtime = runtime_of(lab, transport, redis, namespace)
    await runtime.run()
    channel = await amqp.channel()
    commands = await channel.get_exchange(transport.topology.commands_exchange, ensure=False)
    for message_id, body in (("not-json", b"\xff{"), ("not-an-envelope", b'{"type": "Book"}')):
        await commands.publish(aio_pika.Message(body, message_id=message_id), routing_key=NAME)
    good = command("Book")
    await transport.publish_command(NAME, good)
    assert (await replies.next()).causation_id == good.message_id
    dead = await channel.get_queue(transport.topology.dead_letter_queue, ensure=False)
    parked = {}
    for _ in range(2):
        message = await eventually(lambda: dead.get(no_ack=True, fail=False), what="a dead letter")
        assert message is not None
        parked[message.message_id] = message
    assert parked.keys() == {"not-json", "not-an-envelope"}
    for message in parked.values():
        assert str(message.headers["x-saga-dead-reason"]).startswith("unparseable command: ")
        assert message.headers["x-saga-source-queue"] == f"{namespace}.{NAME}"
        assert message.headers["x-saga-dead-letter-id"]
    assert parked["not-an-envelope"].body == b'{"type": "Book"}'
    assert lab.calls == ["Book"]


async def test_a_reply_that_cannot_be_published_leaves_the_command_unacked_and_its_redelivery_gets_the_same_reply(
    redis: Redis,
    namespace: str,
    transport: RabbitTransport,
    replies: Replies,
    amqp: aio_pika.abc.AbstractConnection,
) -> None:
    lab = make_lab()
    runtime = runtime_of(lab, transport, redis, namespace)
    deliveries: list[Delivery] = []
    handle = runtime.handle

    async def spied(delivery: Delivery) -> Any:
        deliveries.append(delivery)
        return await handle(delivery)

    runtime.handle = spied  # type: ignore[method-assign]
    channel = await amqp.channel()
    orchestrator = await channel.get_queue(transport.topology.orchestrator_queue, ensure=False)
    replies_exchange = transport.topology.replies_exchange
    await runtime.run()  # (declares the topology, with the binding)
    # No queue takes a reply now: publishing one fails (the broker returns it).
    await orchestrator.unbind(replies_exchange, routing_key="orchestrator")
    sent = command("Book")
    await transport.publish_command(NAME, sent)
    await eventually(lambda: _value(len(deliveries)), until=lambda n: n >= 2, what="a redelivery")
    assert deliveries[1].delivery_count >= 1 or deliveries[1].redelivered
    await orchestrator.bind(replies_exchange, routing_key="orchestrator")
    reply = await replies.next()
    assert (reply.type, reply.payload, reply.causation_id) == (
        "Booked",
        {"booking": "x-1"},
        sent.message_id,
    )
    assert lab.calls == ["Book"]  # redeliveries found the stored reply
    assert await effects(redis, lab, namespace) == (1, 0)


# -- an outage between the effect and its record -------------------------------------------------


async def test_an_answer_redis_could_not_store_is_stored_when_it_is_back_without_a_second_effect(
    own_redis: RedisServer, namespace: str, transport: RabbitTransport, replies: Replies
) -> None:
    redis = redis_client(Settings(redis_url=own_redis.url, namespace=namespace))
    lab = make_lab()
    runtime = runtime_of(lab, transport, redis, namespace)
    killed = asyncio.Event()

    async def kill_redis() -> None:
        lab.after_effect = None
        await asyncio.to_thread(own_redis.kill)
        killed.set()

    async def restart_redis() -> None:
        await killed.wait()
        await asyncio.to_thread(own_redis.start)

    lab.after_effect = kill_redis
    try:
        restarting = asyncio.create_task(restart_redis())
        # As the transport runs a handler: an outage is waited out, the command in hand.
        outcome = await run_handler(
            runtime.handle, delivered(command("Book")), queue=NAME, still_held=lambda: True
        )
        await restarting
        assert outcome == ACK
        assert lab.calls == ["Book"]
        assert (await replies.next()).payload == {"booking": "x-1"}
        assert await effects(redis, lab, namespace) == (1, 0)
    finally:
        await redis.aclose()


async def test_a_body_that_is_no_envelope_is_a_dead_letter_not_an_answer(
    redis: Redis, namespace: str, transport: RabbitTransport
) -> None:
    runtime = runtime_of(make_lab(), transport, redis, namespace)
    outcome = await runtime.handle(Delivery(body=b"[1, 2]"))
    assert isinstance(outcome, DeadLetter) and outcome.reason.startswith("unparseable command: ")
