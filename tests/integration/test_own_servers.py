"""A fault test's own RabbitMQ node: it is the one faulted, the shared broker stays up, and
it goes away whole."""

import asyncio
import socket
from pathlib import Path

import aio_pika
import pytest

from tests.nodes import RabbitNode, group_alive
from tests.waiting import eventually


async def test_a_fault_on_its_own_node_leaves_the_shared_broker_up(
    own_rabbit: RabbitNode, amqp: aio_pika.abc.AbstractConnection
) -> None:
    on_own_node = await aio_pika.connect(own_rabbit.url, timeout=10)
    shared = await amqp.channel()
    queue = await shared.declare_queue(exclusive=True)
    await asyncio.to_thread(own_rabbit.stop_app)
    # The fault is real: the node closed the connection to it...
    await eventually(
        lambda: asyncio.sleep(0, not on_own_node.connected.is_set()),
        what="own node closing its connection",
    )
    await asyncio.to_thread(own_rabbit.start_app)
    # ...and the shared broker did not notice: the connection opened before is open, and
    # works (stop_app on it would have closed every connection).
    assert amqp.connected.is_set()
    await shared.default_exchange.publish(aio_pika.Message(b"still up"), routing_key=queue.name)
    message = await eventually(lambda: queue.get(fail=False), what="the message back")
    assert message is not None and message.body == b"still up"


def test_a_stopped_node_leaves_no_process_behind(own_rabbit: RabbitNode) -> None:
    assert own_rabbit.proc is not None and own_rabbit.processes()
    own_rabbit.stop()
    assert not group_alive(own_rabbit.proc.pid)
    assert own_rabbit.processes() == []


def test_a_node_that_cannot_start_is_an_error_showing_its_log(tmp_path: Path) -> None:
    node = RabbitNode(tmp_path / "rabbitmq")
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", node.port))
            taken.listen()
            with pytest.raises(AssertionError, match="could_not_start_listener") as error:
                node.start()
    finally:
        node.stop()
    assert f"{node.name} (AMQP on port {node.port}) exited" in str(error.value)
    assert node.processes() == []
