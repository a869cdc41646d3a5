"""The auth service in this process (over httpx's ASGI transport) on the real Redis and on
a Redis Cluster: throttled sign-ins, the bounded hashing pool, revocation and key rotation."""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import pytest
import structlog
from prometheus_client import REGISTRY

from saga.api.auth import AuthClient
from saga.auth.app import create_auth_app
from saga.auth.keys import RETIRE_GRACE, KeyRing
from saga.auth.names import auth_prefix
from saga.auth.revocations import Revocations
from saga.auth.throttle import SignInThrottle, ThrottlePolicy
from saga.auth.users import UserStore
from saga.connections import AnyRedis
from saga.settings import Settings

pytestmark = pytest.mark.either_redis

PASSWORD = "correct-horse"
ANN, BOB, ADMIN = "ann@example.com", "bob@example.com", "root@example.com"

Client = httpx.AsyncClient


@pytest.fixture
async def users(redis: AnyRedis, namespace: str) -> UserStore:
    store = UserStore(redis, namespace)
    for email in (ANN, BOB):
        await store.add(email, PASSWORD, None)
    await store.add(ADMIN, PASSWORD, ["admin"])
    return store


@asynccontextmanager
async def auth_service(redis: AnyRedis, namespace: str, **settings: Any) -> AsyncIterator[Client]:
    """The auth app with these settings, started, and a client of it."""
    app = create_auth_app(Settings(namespace=namespace, **settings), redis=redis)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://auth", timeout=10
        ) as client,
    ):
        yield client


def hashes() -> float:
    return REGISTRY.get_sample_value("saga_auth_password_hashes_total") or 0.0


async def sign_in(client: Client, email: str, password: str, **headers: str) -> httpx.Response:
    return await client.post(
        "/auth/token", json={"email": email, "password": password}, headers=headers
    )


async def token_of(client: Client, email: str) -> str:
    response = await sign_in(client, email, PASSWORD)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def verify(client: Client, token: str) -> int:
    return (await client.post("/auth/verify", json={"token": token})).status_code


async def revoke(client: Client, token: str, **body: str) -> httpx.Response:
    return await client.post(
        "/auth/revoke", json=body, headers={"Authorization": f"Bearer {token}"}
    )


# Throttling


async def test_failures_past_the_threshold_are_429_with_retry_after_and_hash_nothing(
    redis: AnyRedis, namespace: str, users: UserStore
) -> None:
    async with auth_service(redis, namespace, auth_account_failures=3, auth_delay=30) as client:
        before = hashes()
        for _ in range(3):
            assert (await sign_in(client, ANN, "wrong-password")).status_code == 401
        assert hashes() == before + 3
        for password in ("wrong-password", PASSWORD):  # the right one waits too
            throttled = await sign_in(client, ANN, password)
            assert throttled.status_code == 429
            assert throttled.headers["Retry-After"] == "30"
            assert "too many failed sign-ins" in throttled.json()["detail"]
        assert hashes() == before + 3
        assert (await sign_in(client, BOB, PASSWORD)).status_code == 200  # another account


async def test_each_failure_past_the_threshold_doubles_the_wait_up_to_the_cap(
    redis: AnyRedis, namespace: str
) -> None:
    policy = ThrottlePolicy(account_failures=3, address_failures=1000, delay=1, max_delay=10)
    throttle = SignInThrottle(redis, namespace, policy)
    waits = [await throttle.failed(ANN, "192.0.2.1") for _ in range(9)]
    assert waits == [0, 0, 1, 2, 4, 8, 10, 10, 10]
    assert 9 < await throttle.wait(ANN, "192.0.2.1") <= 10
    assert await throttle.wait(BOB, "192.0.2.1") == 0
    await throttle.succeeded(ANN)
    assert await throttle.wait(ANN, "192.0.2.1") == 0
    assert await throttle.failed(ANN, "192.0.2.1") == 0  # its count starts again


async def test_failures_are_forgotten_after_the_window(redis: AnyRedis, namespace: str) -> None:
    policy = ThrottlePolicy(account_failures=2, address_failures=1000, delay=1, window=0.2)
    throttle = SignInThrottle(redis, namespace, policy)
    assert await throttle.failed(ANN, "192.0.2.1") == 0
    key = f"{auth_prefix(redis, namespace)}:throttle:account:{ANN}:failures"
    await wait_until(lambda: _gone(redis, key))
    assert await throttle.failed(ANN, "192.0.2.1") == 0  # a first failure again


async def _gone(redis: AnyRedis, key: str) -> bool:
    return not await redis.exists(key)


async def wait_until(condition: Callable[[], Awaitable[bool]], within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, "not within the bound"
        await asyncio.sleep(0.05)


async def test_an_unknown_account_costs_and_answers_as_a_wrong_password(
    redis: AnyRedis, namespace: str, users: UserStore
) -> None:
    async with auth_service(redis, namespace, auth_account_failures=2, auth_delay=5) as client:
        answers = []
        for email in (ANN, "nobody@example.com"):
            before = hashes()
            for _ in range(3):
                response = await sign_in(client, email, "wrong-password")
                answers.append((email, response.status_code, response.json()))
            assert hashes() == before + 2  # two hashed, the third throttled
        wrong, unknown = answers[:3], answers[3:]
        assert [a[1:] for a in wrong] == [a[1:] for a in unknown]
        assert [a[1] for a in wrong] == [401, 401, 429]


async def test_a_right_password_forgets_the_account_s_failures(
    redis: AnyRedis, namespace: str, users: UserStore
) -> None:
    async with auth_service(redis, namespace, auth_account_failures=3) as client:
        for _ in range(2):
            assert (await sign_in(client, ANN, "wrong-password")).status_code == 401
        await token_of(client, ANN)
        for _ in range(2):
            assert (await sign_in(client, ANN, "wrong-password")).status_code == 401


async def test_failures_from_one_address_throttle_every_account_from_it(
    redis: AnyRedis, namespace: str, users: UserStore
) -> None:
    async with auth_service(
        redis, namespace, auth_address_failures=3, auth_delay=20, auth_trusted_proxies="127.0.0.1"
    ) as client:
        attacker = {"X-Forwarded-For": "203.0.113.7"}
        for email in ("a@example.com", "b@example.com", "c@example.com"):
            assert (await sign_in(client, email, "wrong-password", **attacker)).status_code == 401
        throttled = await sign_in(client, ANN, PASSWORD, **attacker)
        assert throttled.status_code == 429
        assert throttled.headers["Retry-After"] == "20"
        # Someone else behind the same proxy is not held up.
        assert (
            await sign_in(client, ANN, PASSWORD, **{"X-Forwarded-For": "198.51.100.2"})
        ).status_code == 200


async def test_a_forwarded_for_header_is_ignored_unless_its_proxy_is_trusted(
    redis: AnyRedis, namespace: str, users: UserStore
) -> None:
    async with auth_service(redis, namespace, auth_address_failures=2, auth_delay=20) as client:
        for n in range(2):
            spoofed = {"X-Forwarded-For": f"203.0.113.{n}"}
            assert (
                await sign_in(client, f"{n}@example.com", "wrong", **spoofed)
            ).status_code == 401
        again = await sign_in(client, ANN, PASSWORD, **{"X-Forwarded-For": "203.0.113.99"})
        assert again.status_code == 429  # the peer (the test's client) is counted


async def test_sign_ins_past_the_hashing_slots_are_503_at_once(
    redis: AnyRedis, namespace: str, users: UserStore
) -> None:
    async with auth_service(redis, namespace, auth_hash_slots=1) as client:
        before = hashes()
        answers = await asyncio.gather(*(sign_in(client, ANN, PASSWORD) for _ in range(20)))
        statuses = [a.status_code for a in answers]
        assert set(statuses) == {200, 503}, statuses
        busy = [a for a in answers if a.status_code == 503]
        assert all(a.headers["Retry-After"] == "1" for a in busy)
        assert hashes() == before + statuses.count(200)  # a refused sign-in hashed nothing


async def test_sign_ins_are_logged_without_passwords_or_tokens(
    redis: AnyRedis, namespace: str, users: UserStore
) -> None:
    async with auth_service(redis, namespace, auth_account_failures=1) as client:
        with structlog.testing.capture_logs() as logs:
            token = await token_of(client, ANN)
            await sign_in(client, BOB, "secret-wrong-password")
            await sign_in(client, BOB, "secret-wrong-password")
            await revoke(client, token)
    sign_ins = [(e["outcome"], e["email"]) for e in logs if e["event"] == "sign-in"]
    assert sign_ins == [("success", ANN), ("failure", BOB), ("throttled", BOB)]
    assert [(e["scope"], e["email"]) for e in logs if e["event"] == "token revoked"] == [
        ("token", ANN)
    ]
    written = repr(logs)
    assert PASSWORD not in written and "secret-wrong-password" not in written
    assert token not in written and token.split(".")[2] not in written


# Revocation


async def test_a_revoked_token_is_refused_and_its_user_s_others_are_not(
    redis: AnyRedis, namespace: str, users: UserStore
) -> None:
    async with auth_service(redis, namespace) as client:
        first, second = await token_of(client, ANN), await token_of(client, ANN)
        signed_out = await revoke(client, first)
        assert signed_out.status_code == 200
        assert signed_out.json() == {"revoked": "token", "email": ANN}
        assert await verify(client, first) == 401
        assert await verify(client, second) == 200
        assert (await revoke(client, first)).status_code == 401  # already revoked
        assert (await client.post("/auth/revoke", json={})).status_code == 401  # no token


async def test_an_admin_revokes_every_token_of_a_user(
    redis: AnyRedis, namespace: str, users: UserStore
) -> None:
    async with auth_service(redis, namespace) as client:
        anns = [await token_of(client, ANN) for _ in range(2)]
        bobs = await token_of(client, BOB)
        admin = await token_of(client, ADMIN)
        refused = await revoke(client, bobs, email=ANN)
        assert refused.status_code == 403
        assert [await verify(client, t) for t in anns] == [200, 200]
        done = await revoke(client, admin, email=ANN.upper())
        assert done.json() == {"revoked": "all", "email": ANN}
        assert [await verify(client, t) for t in [*anns, bobs, admin]] == [401, 401, 200, 200]
        assert (await revoke(client, bobs, email=BOB)).status_code == 200  # one's own
        assert await verify(client, bobs) == 401


# Key rotation


async def test_tokens_of_the_previous_key_verify_across_a_rotation_until_it_retires(
    redis: AnyRedis, namespace: str, users: UserStore
) -> None:
    ring = KeyRing(redis, namespace)  # as another replica
    async with auth_service(redis, namespace, token_ttl=600) as client:
        old = await token_of(client, ANN)
        now = time.time()
        old_kid = jwt.get_unverified_header(old)["kid"]
        assert await ring.secret(old_kid, now=now) is not None  # read before the rotation
        new_kid, retired, dropped = await ring.rotate(now=now, token_ttl=600)
        new = await token_of(client, ANN)
        assert old_kid == retired
        assert jwt.get_unverified_header(new)["kid"] == new_kid != retired
        assert dropped == []
        assert [await verify(client, t) for t in (old, new)] == [200, 200]
        # Past the longest life of a token it signed (and the grace), the old key is
        # refused, even by a replica that read it before the rotation; then dropped.
        later = now + 600 + RETIRE_GRACE + 1
        assert await ring.secret(retired, now=later) is None
        assert await ring.secret(new_kid, now=later) is not None
        newest, retired_now, dropped = await ring.rotate(now=later, token_ttl=600)
        assert (retired_now, dropped) == (new_kid, [retired])
    async with auth_service(redis, namespace, token_ttl=600) as replica:
        assert [await verify(replica, t) for t in (old, new)] == [401, 200]
        assert jwt.get_unverified_header(await token_of(replica, ANN))["kid"] == newest


async def test_replicas_share_the_first_key_and_see_a_rotation_at_once(
    redis: AnyRedis, namespace: str, users: UserStore
) -> None:
    async with (
        auth_service(redis, namespace) as one,
        auth_service(redis, namespace) as other,
    ):
        token = await token_of(one, ANN)
        assert await verify(other, token) == 200
        kid, _, _ = await KeyRing(redis, namespace).rotate(now=time.time(), token_ttl=3600)
        assert jwt.get_unverified_header(await token_of(other, BOB))["kid"] == kid
        assert await verify(one, token) == 200


async def test_a_fixed_key_from_the_environment_signs_and_verifies(
    redis: AnyRedis, namespace: str, users: UserStore
) -> None:
    async with auth_service(redis, namespace, auth_secret="x" * 48) as client:
        token = await token_of(client, ANN)
        assert jwt.get_unverified_header(token)["kid"] == "env"
        assert await verify(client, token) == 200
    async with auth_service(redis, namespace, auth_secret="y" * 48) as changed:
        assert await verify(changed, token) == 401


async def test_revocations_and_rotations_are_counted_alike_on_every_replica(
    redis: AnyRedis, namespace: str, users: UserStore
) -> None:
    async with (
        auth_service(redis, namespace) as one,
        auth_service(redis, namespace) as other,
    ):
        await revoke(one, await token_of(one, ANN))
        await Revocations(redis, namespace).revoke_user(BOB, now=time.time())  # the CLI's
        await KeyRing(redis, namespace).rotate(now=time.time(), token_ttl=3600)
        for replica in (one, other):
            text = (await replica.get("/metrics")).text
            assert 'saga_auth_revocations{scope="token"} 1.0' in text
            assert 'saga_auth_revocations{scope="all"} 1.0' in text
            assert "saga_auth_key_rotations 1.0" in text


async def test_the_api_s_auth_client_signs_out_and_forgets_the_token_at_once(
    redis: AnyRedis, namespace: str, users: UserStore
) -> None:
    app = create_auth_app(Settings(namespace=namespace), redis=redis)
    async with app.router.lifespan_context(app):
        client = AuthClient("http://auth", timeout=10, transport=httpx.ASGITransport(app=app))
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://auth"
            ) as http:
                token = await token_of(http, ANN)
            caller = await client.verify(token)  # cached from now on
            assert caller is not None and caller.email == ANN
            assert await client.revoke(token) is True
            assert await client.verify(token) is None  # not the cached answer
            assert await client.revoke(token) is False  # already revoked: nothing to do
        finally:
            await client.close()
