"""The front door's parts without servers: circuit breaker, token cache, rate parsing."""

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from saga.api.auth import AuthClient, AuthUnavailable
from saga.api.limits import Rate
from saga.breaker import CircuitBreaker, CircuitOpen


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_after_repeated_failures_and_tries_again_later() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, reset_after=5, clock=clock)
    for _ in range(3):
        breaker.before_call()
        breaker.failed()
    with pytest.raises(CircuitOpen) as refused:
        breaker.before_call()
    assert refused.value.retry_after == pytest.approx(5)
    clock.now += 5
    breaker.before_call()  # the trial call
    assert breaker.state == "half-open"
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # only one trial at a time
    breaker.failed()
    assert breaker.state == "open"
    clock.now += 5
    breaker.before_call()
    breaker.succeeded()
    assert breaker.state == "closed"
    breaker.before_call()


def test_a_success_resets_the_count_of_failures() -> None:
    breaker = CircuitBreaker(threshold=2, reset_after=5, clock=Clock())
    breaker.failed()
    breaker.succeeded()
    breaker.failed()
    breaker.before_call()


def auth_client(handler: httpx.MockTransport, clock: Clock) -> AuthClient:
    return AuthClient(
        "http://auth",
        timeout=1,
        transport=handler,
        cache_ttl=30,
        breaker=CircuitBreaker(threshold=2, reset_after=10, clock=clock),
        clock=clock,
    )


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


# The auth service writes the expiry as the API writes times; an older one wrote seconds
# since the epoch, and the API reads both (so its replicas can be upgraded first).
@pytest.mark.parametrize("written", [iso, float], ids=["ISO 8601", "epoch"])
async def test_verified_tokens_are_cached_but_never_past_their_expiry(
    written: Callable[[float], object],
) -> None:
    clock = Clock()
    calls = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        expires_at = written(clock.now + 10)
        return httpx.Response(
            200,
            json={"email": "Ann@Example.com", "roles": ["customer"], "expires_at": expires_at},
        )

    client = auth_client(httpx.MockTransport(answer), clock)
    first = await client.verify("t1")
    assert first is not None and first.email == "ann@example.com"
    assert await client.verify("t1") == first
    assert len(calls) == 1
    clock.now += 11  # the token expired before the cache's 30 s
    await client.verify("t1")
    assert len(calls) == 2
    await client.close()


async def test_a_verify_on_a_connection_the_server_closed_is_asked_once_more() -> None:
    clock, calls = Clock(), []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) % 2:  # the kept-alive connection, closed by the server as reused
            raise httpx.ReadError("connection reset", request=request)
        expires = iso(clock.now + 10)
        return httpx.Response(
            200, json={"email": "ann@example.com", "roles": [], "expires_at": expires}
        )

    client = auth_client(httpx.MockTransport(answer), clock)
    caller = await client.verify("t1")
    assert caller is not None and calls == ["/auth/verify", "/auth/verify"]
    calls.clear()
    # A sign-in is not a read (a wrong password counts against the account): not again.
    with pytest.raises(AuthUnavailable, match="ReadError"):
        await client.sign_in("ann@example.com", "secret")
    assert calls == ["/auth/token"]
    await client.close()


async def test_an_invalid_token_is_none_and_not_cached() -> None:
    calls = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(401, json={"detail": "invalid"})

    client = auth_client(httpx.MockTransport(answer), Clock())
    assert await client.verify("bad") is None
    assert await client.verify("bad") is None
    assert len(calls) == 2
    await client.close()


async def test_an_auth_outage_trips_the_breaker_and_later_recovers() -> None:
    clock = Clock()
    calls = []
    up = False

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if not up:
            raise httpx.ConnectError("refused")
        return httpx.Response(200, json={"email": "a@example.com", "roles": [], "expires_at": 2e9})

    client = auth_client(httpx.MockTransport(answer), clock)
    for _ in range(2):
        with pytest.raises(AuthUnavailable):
            await client.verify("t")
    started = time.monotonic()
    with pytest.raises(AuthUnavailable) as refused:
        await client.verify("t")
    assert len(calls) == 2, "an open circuit does not ask"
    assert refused.value.retry_after == pytest.approx(10)
    assert time.monotonic() - started < 0.5
    up = True
    clock.now += 10
    assert await client.verify("t") is not None
    await client.close()


@pytest.mark.parametrize(
    ("text", "rate"),
    [("20/second", Rate(20, 1)), ("600/minute", Rate(600, 60)), (" 5 / hour ", Rate(5, 3600))],
)
def test_rates_parse(text: str, rate: Rate) -> None:
    assert Rate.parse(text) == rate


@pytest.mark.parametrize("text", ["20", "0/second", "20/day", "fast"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="a rate is like"):
        Rate.parse(text)


async def test_requests_with_one_token_that_come_together_ask_the_auth_service_once() -> None:
    clock = Clock()
    calls = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        body = {"email": "ann@example.com", "roles": ["customer"], "expires_at": iso(2000.0)}
        return httpx.Response(200, json=body)

    client = auth_client(httpx.MockTransport(answer), clock)
    callers = await asyncio.gather(*(client.verify("token") for _ in range(20)))
    assert len(calls) == 1
    assert {c.email for c in callers if c is not None} == {"ann@example.com"}
    await client.verify("another")
    assert len(calls) == 2


async def test_requests_that_come_together_share_the_auth_service_s_failure() -> None:
    calls = []

    def fail(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500)

    client = auth_client(httpx.MockTransport(fail), Clock())
    answers = await asyncio.gather(
        *(client.verify("token") for _ in range(5)), return_exceptions=True
    )
    assert len(calls) == 1 and all(isinstance(a, AuthUnavailable) for a in answers)
    with pytest.raises(AuthUnavailable):
        await client.verify("token")  # asked again: a failure is not kept
    assert len(calls) == 2
