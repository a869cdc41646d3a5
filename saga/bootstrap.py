"""Wiring in one place: settings -> connections -> store, transport -> every process's parts.

`Wiring` builds the object graph of one namespace from the settings and the loaded
extensions; every entry point (the API, the orchestrator, a participant, the CLI's
operator commands, the embedded demo, the bench) takes its parts from it, and tests
build the same graph with their own parts plugged in (a Redis client, a transport,
a clock, the extensions).
"""

import asyncio
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import structlog
from prometheus_client import start_http_server

from contracts.topology import Topology
from saga import eventloop
from saga import participant as sdk
from saga.clock import Clock, utc_now
from saga.connections import AnyRedis, redis_client, warn_if_replicas_short
from saga.core.definition import SagaDefinition
from saga.definitions import compile_documents
from saga.extensions import Extensions, ParticipantLike, selected
from saga.http_participants import HttpParticipants
from saga.metrics import Sampler
from saga.orchestrator import (
    STATE_CACHE_SIZE,
    Orchestrator,
    SagaStarter,
    StateCache,
    TimerLoop,
)
from saga.outbox import Dispatcher, OutboxRelay
from saga.rabbit import RabbitTransport
from saga.registry import DefinitionRegistry
from saga.retention import Trimmer, trim_interval
from saga.settings import Settings
from saga.store import RedisSagaStore
from saga.transport import Transport

log = structlog.get_logger(__name__)

# Makes the transport of a process's role (`orchestrator`, `api`, `stock`...).
TransportFactory = Callable[[str], Transport]


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


@dataclass
class Loops:
    """The orchestrator's background loops: timers, the outbox relay, retention, and the
    HTTP participants' calls."""

    timers: TimerLoop
    relay: OutboxRelay
    trimmer: Trimmer
    http: HttpParticipants

    def run(self, stop: asyncio.Event) -> list[Awaitable[None]]:
        """Each loop's run until `stop` is set."""
        return [
            self.timers.run(stop),
            self.relay.run(stop),
            self.trimmer.run(stop),
            self.http.run(stop),
        ]


class Wiring:
    """The object graph of one namespace. Made parts are shared (one store, one
    registry); connections open only when a part is used. Close with `aclose`."""

    def __init__(
        self,
        settings: Settings,
        *,
        extensions: Extensions | None = None,
        redis: AnyRedis | None = None,
        transport: TransportFactory | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.settings = settings
        self.extensions = selected(settings) if extensions is None else extensions
        self.catalogue = self.extensions.catalogue
        self.builtins = compile_documents(self.extensions.definitions, self.catalogue)
        self._owns_redis = redis is None
        self.redis = redis_client(settings) if redis is None else redis
        self._transport = transport or self._rabbit
        self.clock = clock
        self.store = RedisSagaStore(
            self.redis,
            settings.namespace,
            buckets=settings.redis_buckets,
            wait_replicas=settings.redis_wait_replicas,
            wait_timeout_ms=int(settings.redis_wait_timeout * 1000),
            relay_grace=settings.relay_grace,
            relay_interval=settings.relay_interval,
        )
        # The states this process's orchestrators wrote last, so most inputs skip a read.
        self.states = StateCache(STATE_CACHE_SIZE)
        self.registry = DefinitionRegistry(
            self.redis,
            settings.namespace,
            builtins=self.builtins,
            catalogue=self.catalogue,
            adjust=adjust_for(settings),
            buckets=settings.redis_buckets,
        )

    @property
    def topology(self) -> Topology:
        """The namespace's names, with the queues of every participant the extensions
        ship or their definitions name (those applied later are declared as they are)."""
        named = [p for _, spec in self.builtins.values() for p in spec.named_participants()]
        return Topology(self.settings.namespace).with_participants(
            [*self.extensions.participants, *named]
        )

    def _rabbit(self, name: str) -> Transport:
        return RabbitTransport(
            self.settings.rabbitmq_url,
            self.topology,
            prefetch=self.settings.prefetch,
            name=f"saga {name}",
            quorum_size=self.settings.rabbitmq_quorum_size,
        )

    def transport(self, name: str) -> Transport:
        """A transport (not yet connected) for a process's role; `name` names its
        connection on the broker."""
        return self._transport(name)

    def dispatcher(self, transport: Transport) -> Dispatcher:
        """Publishes what the store's outboxes hold, on `transport`."""
        # A command unanswered this long is cleared on its own, well before the relay's
        # grace would have it published again.
        return Dispatcher(
            self.store, transport, answer_wait=min(1.0, self.settings.relay_grace / 4)
        )

    def orchestrator(self, dispatcher: Dispatcher) -> Orchestrator:
        """Applies replies, timers, cancels and replays to sagas."""
        return Orchestrator(
            self.store, dispatcher, self.registry, clock=self.clock, states=self.states
        )

    def starter(self, dispatcher: Dispatcher, *, replies_here: bool = False) -> SagaStarter:
        """Starts sagas, durable before their first command is published.

        `replies_here`: the orchestrator that consumes the replies runs in this process
        (the embedded system, the bench in one process); it is given each new saga's
        state, and the first reply reads nothing. Elsewhere (the front door's process)
        the states would only fill memory."""
        return SagaStarter(
            self.store,
            dispatcher,
            builtin=self.registry.is_builtin,
            clock=self.clock,
            states=self.states if replies_here else None,
        )

    def loops(
        self, orchestrator: Orchestrator, dispatcher: Dispatcher, transport: Transport
    ) -> Loops:
        """The orchestrator's background loops (the HTTP participants reply on
        `transport`)."""
        settings = self.settings
        return Loops(
            timers=TimerLoop(
                self.store.timers,
                orchestrator,
                interval=settings.timer_interval,
                lease=settings.timer_lease,
                clock=self.clock,
            ),
            relay=OutboxRelay(
                self.store,
                dispatcher,
                interval=settings.relay_interval,
                grace=settings.relay_grace,
                clock=self.clock,
            ),
            trimmer=Trimmer(
                self.store,
                retention=settings.retention,
                interval=trim_interval(settings.retention),
                clock=self.clock,
            ),
            http=HttpParticipants(self.registry, transport, clock=self.clock),
        )

    def participant(self, name: str) -> ParticipantLike:
        """A participant the extensions ship; raises KeyError naming those there are."""
        factories = self.extensions.participants
        if name not in factories:
            shipped = ", ".join(factories) or "none: no extension ships one"
            raise KeyError(f"no participant {name!r} (shipped: {shipped})")
        return factories[name](self.redis, self.settings)

    async def aclose(self) -> None:
        """Close the Redis client, if the wiring made it."""
        if self._owns_redis:
            await self.redis.aclose()


class InProcessWorkers:
    """The orchestrator (with its loops) and every shipped participant in this process,
    each on a transport of its own from the wiring (the embedded demo hands out one
    in-memory transport; the bench a RabbitMQ connection each, as processes have)."""

    def __init__(self, wiring: Wiring) -> None:
        self.wiring = wiring
        self._transports: list[Transport] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._dispatcher: Dispatcher | None = None
        self._loops: Loops | None = None

    async def _connected(self, name: str) -> Transport:
        transport = self.wiring.transport(name)
        if transport not in self._transports:
            await transport.connect()
            self._transports.append(transport)
        return transport

    async def start(self) -> None:
        """Connect, start consuming, start the orchestrator's loops."""
        wiring = self.wiring
        await wiring.store.check_layout()
        transport = await self._connected("orchestrator")
        dispatcher = self._dispatcher = wiring.dispatcher(transport)
        await transport.declare_participants(await wiring.registry.participants())
        orchestrator = wiring.orchestrator(dispatcher)
        await transport.consume(transport.topology.orchestrator_queue, orchestrator.handle)
        for name in wiring.extensions.participants:
            await wiring.participant(name).start(await self._connected(name))
        loops = self._loops = wiring.loops(orchestrator, dispatcher, transport)
        self._tasks = [asyncio.ensure_future(run) for run in loops.run(self._stop)]

    async def stop(self) -> None:
        """Stop the loops and close every transport this set opened."""
        self._stop.set()
        await asyncio.gather(*self._tasks)
        if self._dispatcher is not None:
            await self._dispatcher.settle()
        for transport in self._transports:
            await transport.close()
        if self._loops is not None:
            await self._loops.http.aclose()


async def run_orchestrator(settings: Settings, stop: asyncio.Event) -> None:
    """Consume replies and relay outboxes until `stop` is set."""
    wiring = Wiring(settings)
    transport = wiring.transport("orchestrator")
    try:
        await wiring.store.check_layout()
        await warn_if_replicas_short(wiring.redis, settings.redis_wait_replicas)
        await transport.connect()
        dispatcher = wiring.dispatcher(transport)
        await transport.declare_participants(await wiring.registry.participants())
        orchestrator = wiring.orchestrator(dispatcher)
        loops = wiring.loops(orchestrator, dispatcher, transport)
        sampler = Sampler(wiring.store, transport, interval=5.0)
        await transport.consume(transport.topology.orchestrator_queue, orchestrator.handle)
        log.info("orchestrator running", namespace=settings.namespace)
        await asyncio.gather(*loops.run(stop), sampler.run(stop))
        await transport.stop_consuming()
        await dispatcher.settle()
        await loops.http.aclose()
    finally:
        await transport.close()
        await wiring.aclose()
    log.info("orchestrator stopped")


async def run_participant(name: str, settings: Settings, stop: asyncio.Event) -> None:
    """Consume the participant's commands until `stop` is set."""
    wiring = Wiring(settings)
    transport = wiring.transport(name)
    try:
        participant = wiring.participant(name)
        await transport.connect()
        await participant.start(transport)
        log.info("service running", service=name, namespace=settings.namespace)
        await stop.wait()
        await transport.stop_consuming()
    finally:
        await transport.close()
        await wiring.aclose()
    log.info("service stopped", service=name)


async def serve_participant(
    participant: sdk.Participant, settings: Settings, stop: asyncio.Event
) -> None:
    """Consume an SDK participant's commands until `stop` is set, then finish the ones
    in hand."""
    wiring = Wiring(settings)
    transport = wiring.transport(participant.name)
    try:
        await transport.connect()
        runtime = sdk.ParticipantRuntime(
            participant,
            transport,
            wiring.redis,
            namespace=settings.namespace,
            retention=settings.retention,
        )
        await runtime.run()
        log.info("participant running", participant=participant.name, namespace=settings.namespace)
        await stop.wait()
        await transport.stop_consuming()
    finally:
        await transport.close()
        await wiring.aclose()
    log.info("participant stopped", participant=participant.name)


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
