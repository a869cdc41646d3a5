"""Closing the transport ends, even when the broker stopped answering: a process shuts
down on SIGTERM whatever its broker does."""

import asyncio
import os
import signal

from contracts.topology import Topology
from saga.rabbit import CLOSE_WITHIN, RabbitTransport
from tests.nodes import RabbitNode
from tests.servers import SHOP_PARTICIPANTS


async def test_closing_does_not_wait_on_a_broker_that_stopped_answering(
    own_rabbit: RabbitNode, namespace: str
) -> None:
    transport = RabbitTransport(own_rabbit.url, Topology(namespace, SHOP_PARTICIPANTS))
    await transport.connect()
    await transport.declare_participants(["stock"])
    assert own_rabbit.proc is not None
    group = os.getpgid(own_rabbit.proc.pid)
    os.killpg(group, signal.SIGSTOP)  # alive, connected, silent
    try:
        # Bounded by CLOSE_WITHIN; the margin is for a loaded machine, not a speed claim.
        await asyncio.wait_for(transport.close(), CLOSE_WITHIN + 25)
    finally:
        os.killpg(group, signal.SIGCONT)
