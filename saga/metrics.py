"""Prometheus metrics: what sagas do (counted where it happens) and what waits (sampled)."""

import asyncio
import functools
from typing import Any, Final, NamedTuple, cast

import structlog
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from saga.clock import Clock, utc_now
from saga.core.decide import Decision
from saga.core.events import (
    CompensationFailed,
    RetryScheduled,
    SagaCompensated,
    SagaCompleted,
    SagaFailed,
    StepCompensated,
    StepFailed,
    StepSucceeded,
)
from saga.core.state import SagaState
from saga.loops import every
from saga.store import RedisSagaStore
from saga.transport import Transport

log = structlog.get_logger(__name__)

_STEP_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# A saga may wait on timers and retries for hours; up to a day.
_SAGA_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)
# The sampler reads the types of this many of the oldest running sagas, for the gauge of
# the longest running saga of each type.
OLDEST_SAMPLED: Final = 100

SAGAS_STARTED: Final = Counter("saga_started_total", "Sagas started.", ["saga_type"])
SAGAS_ENDED: Final = Counter(
    "saga_ended_total",
    "Sagas that reached a terminal status (completed, compensated or failed).",
    ["saga_type", "status"],
)
SAGA_DURATION: Final = Histogram(
    "saga_duration_seconds",
    "From a saga's start to its end (a replayed saga counts from its first start).",
    ["saga_type", "status"],
    buckets=_SAGA_BUCKETS,
)
STEP_DURATION: Final = Histogram(
    "saga_step_duration_seconds",
    "From a step's (or compensation's) first request to its outcome, retries included.",
    ["saga_type", "step", "action", "outcome"],
    buckets=_STEP_BUCKETS,
)
RETRIES: Final = Counter(
    "saga_retries_total", "Retries scheduled, by why.", ["saga_type", "step", "action", "why"]
)
COMMANDS_HANDLED: Final = Counter(
    "saga_commands_handled_total",
    "Commands a participant handled, by the reply it gave.",
    ["participant", "command", "reply"],
)

COMMAND_DURATION: Final = Histogram(
    "saga_command_duration_seconds",
    "From a participant's taking a command to its reply's publishing, by command.",
    ["participant", "command"],
    buckets=_STEP_BUCKETS,
)


@functools.lru_cache(maxsize=4096)
def _child(metric: MetricWrapperBase, *labels: str) -> Any:
    """A metric's child for these label values, looked up once (a lock and a dict
    lookup in prometheus_client, on every message otherwise)."""
    return metric.labels(*labels)


def commands_handled(participant: str, command: str, reply: str) -> "Counter":
    """The counter of one (participant, command, reply)."""
    return cast(Counter, _child(COMMANDS_HANDLED, participant, command, reply))


def command_duration(participant: str, command: str) -> "Histogram":
    """The histogram of how long one participant takes to answer one command type."""
    return cast(Histogram, _child(COMMAND_DURATION, participant, command))


class _Gauges(NamedTuple):
    in_flight: Gauge
    outbox: Gauge
    outbox_oldest: Gauge
    timers: Gauge
    timers_due: Gauge
    dead_letters: Gauge
    queue_messages: Gauge
    queue_consumers: Gauge
    oldest_running: Gauge


@functools.cache
def _gauges() -> _Gauges:
    """The sampled gauges, registered only in a process that samples them (the
    orchestrator), so that no other process exports a misleading 0."""
    return _Gauges(
        in_flight=Gauge("saga_in_flight", "Sagas not yet terminal."),
        outbox=Gauge("saga_outbox_pending", "Sagas whose outbox may hold unpublished commands."),
        outbox_oldest=Gauge(
            "saga_outbox_oldest_seconds",
            "Age of the oldest command waiting in an outbox to be published (0: none).",
        ),
        timers=Gauge(
            "saga_timers_waiting",
            "Retries and timeouts waiting to come due in the timers' index (a command's "
            "timeout joins it once the command is not answered within a second).",
        ),
        timers_due=Gauge(
            "saga_timers_due", "Timers past their time that no orchestrator has taken yet."
        ),
        dead_letters=Gauge("saga_dead_letters", "Messages parked in the dead-letter queue."),
        queue_messages=Gauge(
            "saga_queue_messages", "Messages ready in each queue of the namespace.", ["queue"]
        ),
        queue_consumers=Gauge(
            "saga_queue_consumers", "Consumers reading each queue of the namespace.", ["queue"]
        ),
        oldest_running=Gauge(
            "saga_oldest_running_seconds",
            "Age of the longest running saga of each type (among the oldest sampled).",
            ["saga_type"],
        ),
    )


def observe(before: SagaState, decision: Decision) -> None:
    """Count what one stored decision did."""
    kind = before.saga_type
    for record in decision.records:
        event = record.event
        match event:
            case SagaCompleted() | SagaCompensated() | SagaFailed():
                status = decision.state.status
                _child(SAGAS_ENDED, kind, status).inc()
                if not before.replays:  # a replayed saga's time is the operator's too
                    _child(SAGA_DURATION, kind, status).observe(
                        (record.at - before.created_at).total_seconds()
                    )
            case RetryScheduled():
                _child(RETRIES, kind, event.step, event.action, event.why).inc()
            case StepSucceeded() | StepFailed() | StepCompensated() | CompensationFailed():
                executing = isinstance(event, StepSucceeded | StepFailed)
                step = before.step(event.step)
                began = step.started_at if executing else step.compensation_started_at
                if began is not None:
                    outcome = (
                        "ok" if isinstance(event, StepSucceeded | StepCompensated) else "failed"
                    )
                    action = "execute" if executing else "compensate"
                    _child(STEP_DURATION, kind, event.step, action, outcome).observe(
                        (record.at - began).total_seconds()
                    )


class Sampler:
    """Keeps the gauges of what waits up to date, and the active index tidy."""

    def __init__(
        self,
        store: RedisSagaStore,
        transport: Transport,
        *,
        interval: float,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._transport = transport
        self._interval = interval
        self._clock = clock
        self._types_seen: set[str] = set()
        _gauges()  # registered now, so they are exported from the first scrape

    async def sample(self, *, now: float) -> None:
        """Read the sizes once."""
        gauges = _gauges()
        store, transport = self._store, self._transport
        await store.forget_finished(now=now)
        gauges.in_flight.set(await store.active_count())
        gauges.outbox.set(await store.outbox_pending())
        oldest_command = await store.outbox_oldest()
        gauges.outbox_oldest.set(0 if oldest_command is None else now - oldest_command.timestamp())
        gauges.timers.set(await store.timers.count())
        gauges.timers_due.set(await store.timers.due(now=int(now * 1_000_000)))
        topology = transport.topology
        for queue in topology.all_queues():
            messages = await transport.depth(queue)
            gauges.queue_messages.labels(queue).set(messages)
            gauges.queue_consumers.labels(queue).set(await transport.consumers(queue))
            if queue == topology.dead_letter_queue:
                gauges.dead_letters.set(messages)
        await self._sample_oldest(gauges.oldest_running, now)

    async def _sample_oldest(self, gauge: Gauge, now: float) -> None:
        """The age of the oldest running saga of each type among the oldest sampled; a
        type with none among them has no value (not 0: it may have younger ones)."""
        oldest: dict[str, float] = {}
        for state in await self._store.oldest_active(OLDEST_SAMPLED):
            if not state.terminal:
                oldest.setdefault(state.saga_type, now - state.created_at.timestamp())
        for saga_type in self._types_seen - oldest.keys():
            gauge.remove(saga_type)
        for saga_type, age in oldest.items():
            gauge.labels(saga_type).set(age)
        self._types_seen = set(oldest)

    async def run(self, stop: asyncio.Event) -> None:
        """Sample until `stop` is set; gauges are best effort: a failed round leaves the
        last values."""
        await every(self._interval, stop, self._sample_now, name="metrics sample")

    async def _sample_now(self) -> int:
        await self.sample(now=self._clock().timestamp())
        return 0
