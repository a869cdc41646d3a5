"""Running a handler to a verdict, the same way for every transport, and which errors mean
"a server is away" (waited out) rather than "this message is bad".

The errors are the ports' own (a transport adapter translates its client's into
`TransportUnavailable`) and Redis's: the store, the registry and the participants call
Redis directly, so its client's errors are read here, in the shell, not in a port.
"""

import asyncio
import random
from collections.abc import Callable
from typing import Final

import structlog

from saga import tracing
from saga.connections import REDIS_OUTAGES
from saga.core.policy import OUTAGE_RETRY, backoff_delay
from saga.transport import (
    DELIVERY_LIMIT,
    REQUEUE,
    DeadLetter,
    Delivery,
    Handler,
    Outcome,
    Requeue,
    TransportUnavailable,
    error_text,
)

log = structlog.get_logger(__name__)

# Errors that mean "a server is away", not "this message is bad": the handler is run
# again, with back-off, for as long as it takes; the message is neither nacked nor lost.
INFRASTRUCTURE_ERRORS: Final = (
    TransportUnavailable,
    *REDIS_OUTAGES,
    ConnectionError,
    asyncio.TimeoutError,
)


async def run_handler(
    handler: Handler, delivery: Delivery, *, queue: str, still_held: Callable[[], bool]
) -> Outcome | Requeue | None:
    """Run a handler to a verdict, the same way for every transport.

    A server outage is waited out (the message stays in hand, the handler runs again);
    an exception is a requeue, until the message failed DELIVERY_LIMIT redeliveries,
    when it is dead-lettered with the error as its reason. None: the delivery was lost
    with its connection, and the broker will deliver it again.
    """
    with tracing.consumer(delivery.body, delivery.headers, queue=queue) as span:
        verdict = await _run(handler, delivery, queue=queue, still_held=still_held)
        tracing.annotate(span, {"saga.verdict": _verdict_word(verdict)})
        return verdict


def _verdict_word(verdict: Outcome | Requeue | None) -> str:
    match verdict:
        case DeadLetter():
            return "dead-lettered"
        case Requeue():
            return "requeued"
        case None:
            return "abandoned"
        case _:
            return "acked"


async def _run(
    handler: Handler, delivery: Delivery, *, queue: str, still_held: Callable[[], bool]
) -> Outcome | Requeue | None:
    failed = 0
    while True:
        if not still_held():
            log.warning("delivery abandoned with its channel", queue=queue)
            return None
        try:
            return await handler(delivery)
        except INFRASTRUCTURE_ERRORS as exc:
            failed += 1
            delay = backoff_delay(OUTAGE_RETRY, failed, random.random()).total_seconds()
            log.warning(
                "server unavailable, retrying message",
                queue=queue,
                error=error_text(exc),
                retry_in=delay,
            )
            await asyncio.sleep(delay)
        except Exception as exc:
            if delivery.delivery_count >= DELIVERY_LIMIT:
                reason = f"handler failed {delivery.delivery_count + 1} times: {error_text(exc)}"
                log.error("message dead-lettered", queue=queue, reason=reason)
                return DeadLetter(reason)
            log.exception("handler failed, message requeued", queue=queue, error=error_text(exc))
            await asyncio.sleep(0.5)
            return REQUEUE
