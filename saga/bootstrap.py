"""Wiring in one place: settings -> connections -> store, transport -> the processes."""

import asyncio
import signal
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta

import structlog
from prometheus_client import start_http_server

from contracts.topology import Participant, Topology
from saga.connections import redis_client
from saga.core.definition import SagaDefinition
from saga.core.order import ORDER_SAGA
from saga.metrics import Sampler
from saga.orchestrator import Orchestrator, TimerLoop
from saga.outbox import Dispatcher, OutboxRelay
from saga.rabbit import RabbitTransport
from saga.settings import Settings
from saga.store import RedisSagaStore
from services.order import OrderService
from services.payment import PaymentService
from services.runtime import ParticipantRuntime, ParticipantService
from services.stock import StockService

log = structlog.get_logger(__name__)

DEFINITIONS: Mapping[str, SagaDefinition] = {ORDER_SAGA.name: ORDER_SAGA}


def definitions(settings: Settings) -> dict[str, SagaDefinition]:
    """The saga definitions with the operator's timeout and retry overrides applied."""
    timeout = timedelta(seconds=settings.step_timeout) if settings.step_timeout else None
    return {
        name: definition.with_policy(
            step_timeout=timeout,
            max_attempts=settings.max_attempts,
            retry_backoff=settings.retry_backoff,
            compensation_max_attempts=settings.compensation_max_attempts,
        )
        for name, definition in DEFINITIONS.items()
    }


def transport_for(settings: Settings) -> RabbitTransport:
    """The RabbitMQ transport of the configured namespace (not yet connected)."""
    return RabbitTransport(
        settings.rabbitmq_url, Topology(settings.namespace), prefetch=settings.prefetch
    )


async def run_orchestrator(settings: Settings, stop: asyncio.Event) -> None:
    """Consume replies and relay outboxes until `stop` is set."""
    redis = redis_client(settings)
    transport = transport_for(settings)
    await transport.connect()
    try:
        store = RedisSagaStore(redis, settings.namespace)
        dispatcher = Dispatcher(store, transport)
        orchestrator = Orchestrator(store, dispatcher, definitions(settings))
        relay = OutboxRelay(
            store, dispatcher, interval=settings.relay_interval, grace=settings.relay_grace
        )
        timers = TimerLoop(
            store.timers,
            orchestrator,
            interval=settings.timer_interval,
            lease=settings.timer_lease,
        )
        sampler = Sampler(store, transport, interval=5.0)
        await transport.consume(transport.topology.orchestrator_queue, orchestrator.handle)
        log.info("orchestrator running", namespace=settings.namespace)
        await asyncio.gather(relay.run(stop), timers.run(stop), sampler.run(stop))
        await transport.stop_consuming()
    finally:
        await transport.close()
        await redis.aclose()
    log.info("orchestrator stopped")


async def run_participant(name: Participant, settings: Settings, stop: asyncio.Event) -> None:
    """Consume the participant's commands until `stop` is set."""
    redis = redis_client(settings)
    transport = transport_for(settings)
    await transport.connect()
    try:
        services: dict[Participant, ParticipantService] = {
            "stock": StockService(redis, settings.namespace),
            "payment": PaymentService(redis, settings.namespace),
            "order": OrderService(redis, settings.namespace),
        }
        await ParticipantRuntime(services[name], transport).run()
        log.info("service running", service=name, namespace=settings.namespace)
        await stop.wait()
        await transport.stop_consuming()
    finally:
        await transport.close()
        await redis.aclose()
    log.info("service stopped", service=name)


def serve_metrics(port: int | None, host: str) -> None:
    """Expose this process's Prometheus metrics on host:port (nothing if port is None)."""
    if port is not None:
        start_http_server(port, addr=host)
        log.info("metrics served", host=host, port=port)


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run a process's main coroutine; SIGTERM and Ctrl-C ask it to stop cleanly."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())
