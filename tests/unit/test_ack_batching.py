"""How acks are gathered: a run of finished deliveries in one ack, nothing in hand acked.

(The broker's side — that those acks settle exactly those deliveries — is proved on a
real RabbitMQ in integration/test_transport_contract.py.)"""

from dataclasses import dataclass, field
from typing import Any, cast

from aiormq.abc import DeliveredMessage

from saga.acks import AckBatcher


@dataclass
class Channel:
    acks: list[tuple[int, bool]] = field(default_factory=list)

    async def basic_ack(self, delivery_tag: int, multiple: bool = False, wait: bool = True) -> None:
        self.acks.append((delivery_tag, multiple))


@dataclass
class Message:
    channel: Channel
    delivery_tag: int


def deliveries(channel: Channel, *tags: int) -> list[Any]:
    return [cast(DeliveredMessage, Message(channel, t)) for t in tags]


async def test_a_run_of_finished_deliveries_is_one_ack() -> None:
    channel, acks = Channel(), AckBatcher()
    messages = deliveries(channel, 1, 2, 3, 4)
    for m in messages:
        acks.received(m)
    for m in messages[:3]:
        acks.done(m)
    await acks.flush()
    assert channel.acks == [(3, True)]
    acks.done(messages[3])
    await acks.flush()
    assert channel.acks == [(3, True), (4, True)]


async def test_finished_deliveries_behind_one_in_hand_are_acked_alone() -> None:
    channel, acks = Channel(), AckBatcher()
    m1, m2, m3, m4 = deliveries(channel, 1, 2, 3, 4)
    for m in (m1, m2, m3, m4):
        acks.received(m)
    acks.done(m2)
    acks.done(m4)
    await acks.flush()
    assert channel.acks == [(2, False), (4, False)]  # never `multiple` past m1
    acks.done(m1)
    acks.settled(m3)  # requeued on its own
    await acks.flush()
    assert channel.acks[-1] == (1, True)  # covers only m1: the others are settled
    await acks.flush()
    assert len(channel.acks) == 3


async def test_a_new_channel_forgets_the_old_ones_deliveries() -> None:
    old, new, acks = Channel(), Channel(), AckBatcher()
    (stale,) = deliveries(old, 7)
    acks.received(stale)
    (fresh,) = deliveries(new, 1)
    acks.received(fresh)
    acks.done(stale)  # its channel is gone: nothing to ack it on
    acks.done(fresh)
    await acks.flush()
    assert (old.acks, new.acks) == ([], [(1, True)])
