"""Prometheus metrics: what sagas do (counted where it happens) and what waits (sampled)."""

import asyncio
import functools
from typing import Any, Final, cast

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

SAGAS_STARTED: Final = Counter("saga_started_total", "Sagas started.", ["saga_type"])
SAGAS_ENDED: Final = Counter(
    "saga_ended_total",
    "Sagas that reached a terminal status (completed, compensated or failed).",
    ["saga_type", "status"],
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


@functools.cache
def _gauges() -> tuple[Gauge, Gauge, Gauge, Gauge]:
    """The sampled gauges, registered only in a process that samples them (the
    orchestrator), so that no other process exports a misleading 0."""
    return (
        Gauge("saga_in_flight", "Sagas not yet terminal."),
        Gauge("saga_outbox_pending", "Sagas whose outbox may hold unpublished commands."),
        Gauge("saga_timers_waiting", "Timeouts and retries waiting to come due."),
        Gauge("saga_dead_letters", "Messages parked in the dead-letter queue."),
    )


def observe(before: SagaState, decision: Decision) -> None:
    """Count what one stored decision did."""
    kind = before.saga_type
    for record in decision.records:
        event = record.event
        match event:
            case SagaCompleted() | SagaCompensated() | SagaFailed():
                _child(SAGAS_ENDED, kind, decision.state.status).inc()
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
        _gauges()  # registered now, so they are exported from the first scrape

    async def sample(self, *, now: float) -> None:
        """Read the sizes once."""
        in_flight, outbox, timers, dead_letters = _gauges()
        await self._store.forget_finished(now=now)
        in_flight.set(await self._store.active_count())
        outbox.set(await self._store.outbox_pending())
        timers.set(await self._store.timers.count())
        dead_letters.set(await self._transport.depth(self._transport.topology.dead_letter_queue))

    async def run(self, stop: asyncio.Event) -> None:
        """Sample until `stop` is set; gauges are best effort: a failed round leaves the
        last values."""
        await every(self._interval, stop, self._sample_now, name="metrics sample")

    async def _sample_now(self) -> int:
        await self.sample(now=self._clock().timestamp())
        return 0
