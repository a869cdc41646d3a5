"""Wiring in one place: settings -> connections -> store, transport -> the processes."""

import asyncio
import signal
from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog
from prometheus_client import start_http_server
from redis.asyncio import Redis

from contracts.topology import Topology
from saga import eventloop
from saga.connections import redis_client
from saga.core.definition import SagaDefinition
from saga.http_participants import HttpParticipants
from saga.metrics import Sampler
from saga.orchestrator import Orchestrator, TimerLoop
from saga.outbox import Dispatcher, OutboxRelay
from saga.rabbit import RabbitTransport
from saga.registry import DefinitionRegistry
from saga.retention import Trimmer, trim_interval
from saga.settings import Settings
from saga.store import RedisSagaStore
from saga.transport import Transport
from services.messages import CATALOGUE
from services.order import OrderService
from services.payment import PaymentService
from services.runtime import ParticipantRuntime, ParticipantService
from services.shop import BUILTINS
from services.stock import StockService

SERVICES = tuple(CATALOGUE.participants)
Service = str

log = structlog.get_logger(__name__)


def adjust_for(settings: Settings) -> Callable[[SagaDefinition], SagaDefinition]:
    """The operator's timeout and retry overrides, for every definition."""
    timeout = timedelta(seconds=settings.step_timeout) if settings.step_timeout else None

    def adjust(definition: SagaDefinition) -> SagaDefinition:
        return definition.with_policy(
            step_timeout=timeout,
            max_attempts=settings.max_attempts,
            retry_backoff=settings.retry_backoff,
            compensation_max_attempts=settings.compensation_max_attempts,
        )

    return adjust


def registry_for(redis: Redis, settings: Settings) -> DefinitionRegistry:
    """The namespace's definitions: the built-in ones and those applied, with the
    operator's overrides."""
    return DefinitionRegistry(
        redis,
        settings.namespace,
        builtins=BUILTINS,
        catalogue=CATALOGUE,
        adjust=adjust_for(settings),
    )


def transport_for(settings: Settings, name: str) -> RabbitTransport:
    """The RabbitMQ transport of the configured namespace (not yet connected); `name`
    (the process's role) names its connection on the broker."""
    return RabbitTransport(
        settings.rabbitmq_url,
        Topology(settings.namespace, SERVICES),
        prefetch=settings.prefetch,
        name=f"saga {name}",
    )


def participant_services(redis: Redis, settings: Settings) -> dict[Service, ParticipantService]:
    """The three participant services on one Redis client."""
    namespace, retention = settings.namespace, settings.retention
    return {
        "stock": StockService(redis, namespace, retention=retention),
        "payment": PaymentService(redis, namespace, retention=retention),
        "order": OrderService(redis, namespace, retention=retention),
    }


class InProcessWorkers:
    """The orchestrator (with its timers and relay) and the three participants in this
    process, each on a transport of its own from `transport` (the embedded demo hands out
    one in-memory transport; the bench a RabbitMQ connection each, as processes have)."""

    def __init__(
        self, settings: Settings, redis: Redis, transport: Callable[[], Transport]
    ) -> None:
        self.settings = settings
        self.store = RedisSagaStore(redis, settings.namespace)
        self.registry = registry_for(redis, settings)
        self.services = participant_services(redis, settings)
        self._transport = transport
        self._transports: list[Transport] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._dispatcher: Dispatcher | None = None
        self._http: HttpParticipants | None = None

    async def _connected(self) -> Transport:
        transport = self._transport()
        if transport not in self._transports:
            await transport.connect()
            self._transports.append(transport)
        return transport

    async def start(self) -> None:
        """Connect, start consuming, start the timer and relay loops."""
        transport = await self._connected()
        dispatcher = self._dispatcher = Dispatcher(self.store, transport)
        await transport.declare_participants(await self.registry.participants())
        orchestrator = Orchestrator(self.store, dispatcher, self.registry)
        await transport.consume(transport.topology.orchestrator_queue, orchestrator.handle)
        for name in SERVICES:
            await ParticipantRuntime(self.services[name], await self._connected()).run()
        timers = TimerLoop(
            self.store.timers,
            orchestrator,
            interval=self.settings.timer_interval,
            lease=self.settings.timer_lease,
        )
        relay = OutboxRelay(
            self.store,
            dispatcher,
            interval=self.settings.relay_interval,
            grace=self.settings.relay_grace,
        )
        trimmer = Trimmer(
            self.store,
            retention=self.settings.retention,
            interval=trim_interval(self.settings.retention),
        )
        http = self._http = HttpParticipants(self.registry, transport)
        self._tasks = [
            asyncio.create_task(http.run(self._stop)),
            asyncio.create_task(timers.run(self._stop)),
            asyncio.create_task(relay.run(self._stop)),
            asyncio.create_task(trimmer.run(self._stop)),
        ]

    async def stop(self) -> None:
        """Stop the loops and close every transport this set opened."""
        self._stop.set()
        await asyncio.gather(*self._tasks)
        if self._dispatcher is not None:
            await self._dispatcher.settle()
        for transport in self._transports:
            await transport.close()
        if self._http is not None:
            await self._http.aclose()


async def run_orchestrator(settings: Settings, stop: asyncio.Event) -> None:
    """Consume replies and relay outboxes until `stop` is set."""
    redis = redis_client(settings)
    transport = transport_for(settings, "orchestrator")
    await transport.connect()
    try:
        store = RedisSagaStore(redis, settings.namespace)
        dispatcher = Dispatcher(store, transport)
        registry = registry_for(redis, settings)
        await transport.declare_participants(await registry.participants())
        orchestrator = Orchestrator(store, dispatcher, registry)
        relay = OutboxRelay(
            store, dispatcher, interval=settings.relay_interval, grace=settings.relay_grace
        )
        timers = TimerLoop(
            store.timers,
            orchestrator,
            interval=settings.timer_interval,
            lease=settings.timer_lease,
        )
        trimmer = Trimmer(
            store, retention=settings.retention, interval=trim_interval(settings.retention)
        )
        sampler = Sampler(store, transport, interval=5.0)
        http = HttpParticipants(registry, transport)
        await transport.consume(transport.topology.orchestrator_queue, orchestrator.handle)
        log.info("orchestrator running", namespace=settings.namespace)
        await asyncio.gather(
            relay.run(stop), timers.run(stop), trimmer.run(stop), sampler.run(stop), http.run(stop)
        )
        await transport.stop_consuming()
        await dispatcher.settle()
        await http.aclose()
    finally:
        await transport.close()
        await redis.aclose()
    log.info("orchestrator stopped")


async def run_participant(name: Service, settings: Settings, stop: asyncio.Event) -> None:
    """Consume the participant's commands until `stop` is set."""
    redis = redis_client(settings)
    transport = transport_for(settings, name)
    await transport.connect()
    try:
        await ParticipantRuntime(participant_services(redis, settings)[name], transport).run()
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


def run_until_signalled(
    settings: Settings, main: Callable[[asyncio.Event], Awaitable[None]]
) -> None:
    """Run a process's main coroutine on the configured loop; SIGTERM and Ctrl-C stop it."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    eventloop.run(runner(), settings.event_loop)
