"""What the integration tests share: a RabbitMQ transport on the test's namespace."""

from collections.abc import AsyncIterator

import aio_pika
import pytest

from contracts.topology import Topology
from saga.rabbit import RabbitTransport
from tests.servers import RABBITMQ_URL, SHOP_PARTICIPANTS


@pytest.fixture
async def transport(
    amqp: aio_pika.abc.AbstractConnection, namespace: str
) -> AsyncIterator[RabbitTransport]:
    """A connected RabbitMQ transport; the `amqp` fixture removes the topology after."""
    t = RabbitTransport(RABBITMQ_URL, Topology(namespace, SHOP_PARTICIPANTS))
    await t.connect()
    yield t
    await t.close()
