"""The pure back-off function, and the retry defaults that live beside it and nowhere else."""

from collections.abc import Callable
from datetime import timedelta

import pytest

from saga.core.document import BreakerSpec, HttpSpec, RetrySpec, StepSpec
from saga.core.policy import (
    COMPENSATION_RETRY,
    HTTP_BREAKER_RESET_AFTER,
    HTTP_BREAKER_THRESHOLD,
    HTTP_TIMEOUT,
    OUTAGE_RETRY,
    RECONNECT,
    STEP_RETRY,
    STEP_TIMEOUT,
    Backoff,
    RetryPolicy,
    backoff_delay,
)
from saga.handling import run_handler
from saga.transport import ACK, Ack, Delivery

ONE_TO_FIVE = Backoff(backoff=1, max_backoff=5, jitter=0.5)

# (policy, failed try, the random number drawn) -> the wait, in seconds.
WAITS: list[tuple[Backoff, int, float, float]] = [
    (ONE_TO_FIVE, 1, 0.0, 1),  # doubling from the base...
    (ONE_TO_FIVE, 2, 0.0, 2),
    (ONE_TO_FIVE, 3, 0.0, 4),
    (ONE_TO_FIVE, 4, 0.0, 5),  # ...up to the cap
    (ONE_TO_FIVE, 1000, 0.0, 5),  # however many tries failed
    (ONE_TO_FIVE, 2, 0.5, 1.5),  # jitter takes off up to its fraction, never adds
    (ONE_TO_FIVE, 2, 0.999, 1.001),
    (ONE_TO_FIVE, 4, 0.999, 2.5025),  # of the capped wait
    (Backoff(backoff=1, max_backoff=5, jitter=0), 2, 0.999, 2),  # no jitter: exact
    (Backoff(backoff=1, max_backoff=5, jitter=1), 1, 0.5, 0.5),  # all of it at random
    (Backoff(backoff=0, max_backoff=5), 3, 0.0, 0),  # no back-off at all
    (Backoff(backoff=2, max_backoff=1), 1, 0.0, 1),  # a cap below the base wins
    (RetryPolicy(backoff=0.5, max_backoff=30, max_attempts=3), 3, 0.0, 2),
    (STEP_RETRY, 1, 0.0, 0.5),
    (STEP_RETRY, 10, 0.0, 30),
    (OUTAGE_RETRY, 1, 0.0, 0.1),
    (OUTAGE_RETRY, 3, 0.0, 0.4),
    (OUTAGE_RETRY, 50, 0.0, 5),
    (RECONNECT, 1, 0.0, 2),  # the same wait every time
    (RECONNECT, 7, 0.5, 1.5),
]


@pytest.mark.parametrize(("policy", "attempt", "rand", "seconds"), WAITS)
def test_the_wait_after_a_failed_try(
    policy: Backoff, attempt: int, rand: float, seconds: float
) -> None:
    assert backoff_delay(policy, attempt, rand).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("attempt", "rand", "said"),
    [(0, 0.0, "attempts count from 1"), (1, 1.0, r"rand must be in \[0, 1\)"), (1, -0.1, "rand")],
)
def test_a_wait_is_asked_for_a_try_that_failed_with_a_number_in_0_1(
    attempt: int, rand: float, said: str
) -> None:
    with pytest.raises(ValueError, match=said):
        backoff_delay(ONE_TO_FIVE, attempt, rand)


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda: Backoff(backoff=-1), "cannot be negative"),
        (lambda: Backoff(max_backoff=-1), "cannot be negative"),
        (lambda: Backoff(jitter=1.5), "fraction between 0 and 1"),
        (lambda: RetryPolicy(max_attempts=0), "at least 1"),
        (lambda: RetryPolicy(jitter=-0.1), "fraction between 0 and 1"),
    ],
)
def test_a_policy_that_cannot_be_is_refused(make: Callable[[], object], said: str) -> None:
    with pytest.raises(ValueError, match=said):
        make()


def test_a_document_s_defaults_are_the_policy_s() -> None:
    step = StepSpec.model_validate(
        {"name": "s", "participant": "stock", "action": {"command": "C", "reply": "R"}}
    )
    assert step.timeout == STEP_TIMEOUT
    assert RetrySpec().policy() == step.retry.policy() == STEP_RETRY
    assert step.compensation_retry.policy() == COMPENSATION_RETRY
    http = HttpSpec.model_validate({"url": "http://example.com"})
    assert http.timeout == HTTP_TIMEOUT
    assert http.breaker == BreakerSpec()
    assert (http.breaker.threshold, http.breaker.reset_after) == (
        HTTP_BREAKER_THRESHOLD,
        HTTP_BREAKER_RESET_AFTER,
    )
    assert STEP_TIMEOUT > HTTP_TIMEOUT > timedelta(0)  # a step outlasts its call


async def test_a_message_met_by_an_outage_is_run_again_after_the_policy_s_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []

    async def wait(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr("saga.handling.asyncio.sleep", wait)
    monkeypatch.setattr("saga.handling.random.random", lambda: 0.5)
    outages = 8

    async def handler(_: Delivery) -> Ack:
        nonlocal outages
        if outages:
            outages -= 1
            raise ConnectionError("Redis went away")
        return ACK

    outcome = await run_handler(handler, Delivery(b"{}"), queue="q", still_held=lambda: True)
    assert outcome == ACK
    assert waits == [backoff_delay(OUTAGE_RETRY, n, 0.5).total_seconds() for n in range(1, 9)]
    assert waits[-1] == OUTAGE_RETRY.max_backoff * (1 - OUTAGE_RETRY.jitter * 0.5)  # capped
