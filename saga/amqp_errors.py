"""The AMQP client's errors, as the RabbitMQ adapters (transport, acks, dead letters)
read them: which mean the broker or a channel is away, which a refused publish."""

import asyncio
from typing import Final

import aiormq

# The broker, the connection or the channel is away: the work is tried again.
AMQP_OUTAGES: Final = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ChannelClosed,
    ConnectionError,
    asyncio.TimeoutError,
)
# The broker returned a message no queue takes (NO_ROUTE), or nacked it.
AMQP_REFUSALS: Final = (aiormq.exceptions.DeliveryError,)
NO_ROUTE: Final = 312
