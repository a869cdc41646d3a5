"""Dead letters on the real RabbitMQ: any body lists safely, a message keeps its
dead-letter id for life, and replay-all sends each parked message back exactly once."""

import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
from typing import Any

import aio_pika
import pytest

from contracts.topology import Topology
from saga.deadletters import (
    DeadLetterQueue,
    ParkedMessage,
    ReplayInterrupted,
    ReplayRunning,
    replay_lock_queue,
)
from saga.rabbit import RabbitTransport
from saga.transport import (
    DEAD_ID_HEADER,
    DEAD_QUEUE_HEADER,
    DEAD_REASON_HEADER,
    DeadLetter,
    Delivery,
    Outcome,
)
from tests.hostile import HOSTILE
from tests.servers import RABBITMQ_URL, close_connections_named, rabbitmq_or_skip
from tests.waiting import eventually

KB = 1024


def is_safe(text: str) -> bool:
    """Printable on a terminal as it is: no control, format or separator characters."""
    return text.isprintable()


async def publish(
    connection: aio_pika.abc.AbstractConnection,
    exchange: str,
    routing_key: str,
    body: bytes,
    **properties: Any,
) -> None:
    channel = await connection.channel(publisher_confirms=True)
    target = await channel.get_exchange(exchange, ensure=False)
    await target.publish(
        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **properties),
        routing_key=routing_key,
    )
    await channel.close()


def dlq(topology: Topology) -> DeadLetterQueue:
    return DeadLetterQueue(RABBITMQ_URL, topology)


async def parked(topology: Topology, count: int) -> list[ParkedMessage]:
    """The dead letters, once there are `count` of them."""
    return await eventually(
        lambda: dlq(topology).peek(limit=count + 10),
        until=lambda letters: len(letters) == count,
        within=30,
        what=f"{count} dead letters",
    )


async def saga_cli(namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `saga <args>` on the test's namespace, as an operator would."""
    env = {**os.environ, "SAGA_NAMESPACE": namespace, "SAGA_RABBITMQ_URL": RABBITMQ_URL}
    env.pop("NO_COLOR", None)
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "saga", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def saga_json(namespace: str, *args: str) -> Any:
    result = await saga_cli(namespace, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


async def park_by_transport(
    transport: RabbitTransport,
    amqp: aio_pika.abc.AbstractConnection,
    bodies: dict[str, bytes],
    *,
    already: int = 0,
) -> list[ParkedMessage]:
    """Send each body to the stock queue, where a handler dead-letters it as `case <name>`;
    the dead letters, once these are parked next to the `already` parked."""
    topology = transport.topology

    async def refuse(delivery: Delivery) -> Outcome:
        return DeadLetter(f"case {delivery.headers['case']}")

    for name, body in bodies.items():
        await publish(amqp, topology.commands_exchange, "stock", body, headers={"case": name})
    await transport.consume(topology.participant_queue("stock"), refuse)
    letters = await parked(topology, already + len(bodies))
    await transport.stop_consuming()
    return letters


# --- any body lists ---------------------------------------------------------------


async def test_every_hostile_body_lists_with_a_safe_preview_and_its_reason(
    transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection, namespace: str
) -> None:
    # One more, parked by a foreign program straight into the dead-letter exchange, with
    # headers of every odd kind.
    await publish(
        amqp,
        transport.topology.dead_letter_exchange,
        "",
        b"\x1b]0;pwned\x07",
        message_id="[/] \x1b[2J",  # not one an operator could type: the body's hash instead
        headers={
            DEAD_REASON_HEADER: bytearray(b"\xff\x1b[2J[/]" + b"[bold]" * 5000),
            DEAD_QUEUE_HEADER: 42,
            "x-death": "not a list",
        },
    )
    # And one whose header a client library gave as bytes (a string not UTF-8).
    await transport.dead_letter(
        b"{}", reason="case bytes header", queue="q", headers={"x-odd": b"\xff\xfe"}
    )
    letters = await park_by_transport(transport, amqp, HOSTILE, already=2)

    by_reason = {letter.reason: letter for letter in letters}
    for name, body in HOSTILE.items():
        letter = by_reason[f"case {name}"]
        assert letter.queue == transport.topology.participant_queue("stock")
        assert letter.size == len(body)
        assert letter.at is not None
    for letter in letters:
        for text in (
            letter.id,
            letter.reason,
            letter.preview,
            letter.queue or "",
            letter.type or "",
        ):
            assert is_safe(text), text
        assert is_safe(letter.saga_id or "")
        assert len(letter.preview.encode()) <= KB
        assert len(letter.reason.encode()) <= KB
    assert by_reason["case huge"].preview.startswith('{"type": "AAAA')
    assert by_reason["case huge"].preview.endswith("…")
    assert by_reason["case deeply nested array"].preview.startswith("[[[[")
    assert by_reason["case empty"].preview == ""
    assert by_reason["case truncated json"].type is None
    assert by_reason["case odd field types"].type is None
    assert by_reason["case rich markup"].type == "[/]"
    foreign = next(x for x in letters if x.reason.startswith("\ufffd"))
    assert foreign.id == hashlib.sha256(b"\x1b]0;pwned\x07").hexdigest()[:32]

    listed = await saga_json(namespace, "dlq", "list")
    assert len(listed) == len(HOSTILE) + 2
    for item in listed:
        assert {"id", "queue", "reason", "at", "preview"} <= item.keys()
        assert len(item["preview"].encode()) <= KB
    stamped = [item["at"] for item in listed if item["reason"].startswith("case ")]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", at) for at in stamped)

    table = await saga_cli(namespace, "dlq", "list")
    assert table.returncode == 0, table.stderr
    assert "\x1b" not in table.stdout and "\x07" not in table.stdout
    assert "[/]" in table.stdout  # markup in a message is printed as text
    assert "[bold red]s1" in table.stdout


async def test_an_empty_dead_letter_queue_says_so_in_one_line(
    transport: RabbitTransport, namespace: str
) -> None:
    result = await saga_cli(namespace, "dlq", "list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines() == ["no dead letters"]
    assert await saga_json(namespace, "dlq", "list") == []


# --- one id for life --------------------------------------------------------------


async def until_dead_by_delivery_limit(amqp: aio_pika.abc.AbstractConnection, queue: str) -> None:
    """A consumer that gives every delivery back, until RabbitMQ dead-letters the message
    (the queue's x-delivery-limit): what a participant that crashes on it amounts to."""
    channel = await amqp.channel()
    source = await channel.get_queue(queue, ensure=False)
    given_back = 0
    while True:
        message = await source.get(no_ack=False, fail=False)
        if message is None:
            if given_back:
                break
            await asyncio.sleep(0.05)  # the replayed message is on its way
            continue
        given_back += 1
        await message.nack(requeue=True)
    await channel.close()


async def test_a_dead_letter_keeps_its_id_through_replays_and_reparking(
    transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection
) -> None:
    topology = transport.topology
    (letter,) = await park_by_transport(transport, amqp, {"broken": b'{"type": "X"}'})
    stock = topology.participant_queue("stock")

    # Replayed, then dead-lettered by RabbitMQ itself on its delivery limit.
    replayed = await dlq(topology).replay(lambda x: x.id == letter.id)
    assert [x.id for x in replayed.sent] == [letter.id]
    await until_dead_by_delivery_limit(amqp, stock)
    (again,) = await parked(topology, 1)
    assert again.id == letter.id
    assert again.queue == stock
    assert "delivery_limit" in again.reason

    # Replayed again, then parked again by our transport.
    async def refuse(delivery: Delivery) -> Outcome:
        return DeadLetter("still broken")

    assert [x.id for x in (await dlq(topology).replay(lambda x: True)).sent] == [letter.id]
    await transport.consume(stock, refuse)
    (third,) = await eventually(
        lambda: dlq(topology).peek(limit=10),
        until=lambda found: [x.reason for x in found] == ["still broken"],
    )
    assert third.id == letter.id


async def test_a_message_parked_before_ids_gets_a_stable_one(
    transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection
) -> None:
    topology = transport.topology
    stock = topology.participant_queue("stock")
    old = {DEAD_REASON_HEADER: "old reason", DEAD_QUEUE_HEADER: stock}
    await publish(amqp, topology.dead_letter_exchange, "", b"one", message_id="d1", headers=old)
    # (aiormq gives every message a message_id; other clients may give none, or this.)
    await publish(amqp, topology.dead_letter_exchange, "", b"two", message_id="no id", headers=old)
    hashed = hashlib.sha256(b"two").hexdigest()[:32]
    first = await parked(topology, 2)
    assert sorted(x.id for x in first) == sorted(["d1", hashed])
    assert sorted(x.id for x in await parked(topology, 2)) == sorted(["d1", hashed])

    async def refuse(delivery: Delivery) -> Outcome:
        assert DEAD_ID_HEADER in delivery.headers
        return DeadLetter("still broken")

    await transport.consume(stock, refuse)
    assert len((await dlq(topology).replay(lambda x: True)).sent) == 2
    again = await eventually(
        lambda: dlq(topology).peek(limit=10),
        until=lambda found: [x.reason for x in found] == ["still broken"] * 2,
    )
    assert sorted(x.id for x in again) == sorted(["d1", hashed])


# --- removing by id ---------------------------------------------------------------


async def test_remove_drops_only_the_named_dead_letters_and_keeps_the_others_in_order(
    transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection
) -> None:
    bodies = {name: f'{{"n": "{name}"}}'.encode() for name in "abcd"}
    letters = await park_by_transport(transport, amqp, bodies)
    by_body = {letter.preview: letter.id for letter in letters}
    named = [by_body['{"n": "b"}'], by_body['{"n": "d"}'], "no-such-letter"]
    removed = await dlq(transport.topology).remove(named)
    assert sorted(x.id for x in removed) == sorted(named[:2])
    left = await parked(transport.topology, 2)
    assert [x.preview for x in left] == ['{"n": "a"}', '{"n": "c"}']


async def test_an_operator_drops_named_dead_letters_and_is_told_of_those_not_parked(
    transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection, namespace: str
) -> None:
    bodies = {name: f'{{"n": "{name}"}}'.encode() for name in "abc"}
    letters = await park_by_transport(transport, amqp, bodies)
    by_body = {letter.preview: letter.id for letter in letters}
    a, b = by_body['{"n": "a"}'], by_body['{"n": "b"}']
    result = await saga_cli(namespace, "dlq", "drop", a, b, a, "no-such-letter", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"dropped": [a, b], "missing": ["no-such-letter"]}
    assert result.stderr == "saga: no dead letter 'no-such-letter'\n"
    left = await parked(transport.topology, 1)
    assert [x.preview for x in left] == ['{"n": "c"}']
    # Run twice, the second finds nothing to drop, says so, and drops nothing else.
    again = await saga_cli(namespace, "dlq", "drop", a)
    assert again.returncode == 1
    assert f"no dead letter {a!r}" in again.stderr
    assert [x.id for x in await parked(transport.topology, 1)] == [left[0].id]


async def test_dropping_waits_for_no_replay_it_would_miss_messages_of(
    transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection, namespace: str
) -> None:
    [letter] = await park_by_transport(transport, amqp, {"a": b"{}"})
    # What a replay under way holds: the namespace's replay lock (and the messages it
    # has in hand are not in the queue to be found and dropped).
    other = await rabbitmq_or_skip()
    await (await other.channel()).declare_queue(
        replay_lock_queue(transport.topology), exclusive=True
    )
    with pytest.raises(ReplayRunning):
        await dlq(transport.topology).remove([letter.id])
    result = await saga_cli(namespace, "dlq", "drop", letter.id)
    assert result.returncode == 1
    assert "another dead-letter replay is running" in result.stderr
    await other.close()
    assert [x.id for x in await dlq(transport.topology).remove([letter.id])] == [letter.id]


# --- replay-all -------------------------------------------------------------------


async def test_replay_all_sends_each_parked_message_back_exactly_once(
    transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection, namespace: str
) -> None:
    topology = transport.topology
    stock = topology.participant_queue("stock")
    before = await park_by_transport(transport, amqp, {"a": b'{"n": 1}', "b": b'{"n": 2}'})
    deliveries: list[bytes] = []

    async def still_broken(delivery: Delivery) -> Outcome:
        deliveries.append(delivery.body)
        return DeadLetter("still broken")  # parked again at once, during the replay

    await transport.consume(stock, still_broken)
    assert await saga_json(namespace, "dlq", "replay", "--all") == {"replayed": 2}

    async def settled() -> tuple[int, int, int]:
        return (
            await transport.depth(topology.dead_letter_queue),
            await transport.depth(stock),
            len(deliveries),
        )

    await eventually(settled, until=lambda s: s[:2] == (2, 0) and s[2] >= 2, within=30)
    await transport.stop_consuming()
    assert sorted(deliveries) == [b'{"n": 1}', b'{"n": 2}']
    after = await parked(topology, 2)
    assert sorted(x.id for x in after) == sorted(x.id for x in before)
    assert {x.reason for x in after} == {"still broken"}


async def test_only_one_replay_runs_at_a_time(
    transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection, namespace: str
) -> None:
    topology = transport.topology
    await park_by_transport(transport, amqp, {"a": b"{}"})
    # What a replay under way holds: the namespace's replay lock.
    other = await rabbitmq_or_skip()
    await (await other.channel()).declare_queue(replay_lock_queue(topology), exclusive=True)
    with pytest.raises(ReplayRunning):
        await dlq(topology).replay(lambda x: True)
    result = await saga_cli(namespace, "dlq", "replay", "--all")
    assert result.returncode == 1
    assert "another dead-letter replay is running" in result.stderr
    await other.close()  # the lock goes with its connection
    assert len((await dlq(topology).replay(lambda x: True)).sent) == 1


async def test_a_message_whose_queue_is_gone_stays_parked_and_is_named(
    transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection, namespace: str
) -> None:
    topology = transport.topology
    gone = {DEAD_REASON_HEADER: "r", DEAD_QUEUE_HEADER: f"{namespace}.gone"}
    await publish(amqp, topology.dead_letter_exchange, "", b"{}", message_id="d1", headers=gone)
    await park_by_transport(transport, amqp, {"a": b'{"n": 1}'}, already=1)
    result = await saga_cli(namespace, "dlq", "replay", "--all", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"replayed": 1}
    assert f"dead letter d1 stays parked: no queue '{namespace}.gone' takes it" in result.stderr
    assert [x.id for x in await parked(topology, 1)] == ["d1"]


async def test_a_replay_cut_off_loses_nothing_and_says_what_it_sent(
    transport: RabbitTransport, amqp: aio_pika.abc.AbstractConnection
) -> None:
    topology = transport.topology
    bodies = {str(n): f'{{"n": {n}}}'.encode() for n in range(5)}
    await park_by_transport(transport, amqp, bodies)
    looked_at: list[str] = []

    def cut_on_the_third(letter: ParkedMessage) -> bool:
        looked_at.append(letter.id)
        if len(looked_at) == 3:
            name = f"saga dlq ({topology.namespace})"
            assert close_connections_named(name) == 1
        return True

    with pytest.raises(ReplayInterrupted) as cut:
        await dlq(topology).replay(cut_on_the_third)
    sent = {letter.id for letter in cut.value.sent}
    assert len(sent) == 2  # the third went with the connection, before its publish
    # Nothing is lost: every message is parked still or back in its queue.
    stock = topology.participant_queue("stock")
    still = await parked(topology, 3)
    assert {x.id for x in still}.isdisjoint(sent)
    assert sorted(await bodies_in(amqp, stock)) == sorted(
        body for body in bodies.values() if body not in {x.preview.encode() for x in still}
    )


async def bodies_in(amqp: aio_pika.abc.AbstractConnection, queue: str) -> list[bytes]:
    """The bodies waiting in a queue (they stay there)."""
    channel = await amqp.channel()
    source = await channel.get_queue(queue, ensure=False)
    found = []
    while (message := await source.get(no_ack=False, fail=False)) is not None:
        found.append(message.body)
    await channel.close()  # unacked: back in the queue
    return found
