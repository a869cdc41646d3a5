"""`saga bench-flood`: wrong-password sign-ins from one client as fast as they go, against
the real processes (`saga up`) on loopback, while measuring what must keep working: the
auth service's /health and /auth/verify, orders of a customer already signed in, and the
sign-in of an account nobody attacks.

The processes see every client through a proxy they trust (SAGA_AUTH_TRUSTED_PROXIES=
127.0.0.1): the attacker, the customer and the bystander each have an address of their
own in X-Forwarded-For, as behind a gateway; without one they would all be 127.0.0.1.
"""

import asyncio
import contextlib
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any, Final

import httpx

from bench.run import percentile
from saga.auth.users import UserStore
from saga.connections import redis_client
from saga.namespaces import delete_namespace
from saga.settings import Settings
from services.order import OrderService
from services.payment import PaymentService
from services.stock import StockService

PASSWORD: Final = "flood-right-password"
ATTACKER, CUSTOMER_AT, BYSTANDER_AT = "203.0.113.66", "198.51.100.10", "198.51.100.20"
CUSTOMER, BYSTANDER, VENDOR = "buyer@example.com", "bystander@example.com", "shop@example.com"
PROBE_EVERY: Final = 0.02  # seconds between two probes of one kind
IDLE_SECONDS: Final = 3.0  # verify measured before the flood, for comparison


@dataclass(frozen=True)
class FloodResult:
    namespace: str
    attempts: int
    accounts_attacked: int
    flood_seconds: float
    answers: dict[str, int]  # status code -> count, of the attacker's sign-ins
    hashes_computed: int
    idle_verify_p50_ms: float  # before the flood, for comparison
    idle_verify_p99_ms: float
    verify_p50_ms: float
    verify_p99_ms: float
    verify_failed: int
    health_p50_ms: float
    health_p99_ms: float
    health_failed: int
    orders_placed: int
    orders_completed: int
    bystander_sign_ins: dict[str, int]  # status code -> count, during the flood

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON values."""
        return asdict(self)


async def run_flood(
    settings: Settings, *, attempts: int, concurrency: int, accounts: int
) -> FloodResult:
    """Start the system on a fresh namespace, flood it, measure; remove it all after."""
    namespace = f"flood-{uuid.uuid4().hex[:10]}"
    config = settings.model_copy(update={"namespace": namespace})
    redis = redis_client(config)
    api_port, auth_port = _free_port(), _free_port()
    system: subprocess.Popen[bytes] | None = None
    try:
        await _seed(redis, namespace)
        system = _start(namespace, api_port, auth_port)
        api, auth = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{auth_port}"
        async with httpx.AsyncClient(timeout=10) as http:
            await _ready(http, api, system)
            figures = await asyncio.wait_for(
                _flood(http, api, auth, attempts, concurrency, accounts), timeout=600
            )
            return FloodResult(namespace=namespace, **figures)
    finally:
        if system is not None:
            system.terminate()
            system.wait(timeout=30)
        await delete_namespace(redis, config.rabbitmq_url, namespace)
        await redis.aclose()


def _start(namespace: str, api_port: int, auth_port: int) -> subprocess.Popen[bytes]:
    """`saga up` on the namespace: auth, api, orchestrator and the shop's services."""
    ports = ["--api-port", str(api_port), "--auth-port", str(auth_port)]
    return subprocess.Popen(
        [sys.executable, "-m", "saga", "up", *ports],
        env={
            **os.environ,
            "SAGA_NAMESPACE": namespace,
            "SAGA_EXTENSIONS": "shop",
            "SAGA_LOG_LEVEL": "warning",
            "SAGA_AUTH_TRUSTED_PROXIES": "127.0.0.1",
        },
        stdout=subprocess.DEVNULL,
    )


async def _flood(
    http: httpx.AsyncClient, api: str, auth: str, attempts: int, concurrency: int, accounts: int
) -> dict[str, Any]:
    signed_in = await _sign_in(http, auth, CUSTOMER, PASSWORD, CUSTOMER_AT)
    if signed_in.status_code != 200:
        raise RuntimeError(f"the customer could not sign in: {signed_in.status_code}")
    token = str(signed_in.json()["access_token"])
    idle: list[float | None] = []
    await _for(IDLE_SECONDS, _probe(asyncio.Event(), idle, lambda: _verify(http, auth, token)))
    hashes_before = await _hashes(http, auth)
    stop = asyncio.Event()
    verify: list[float | None] = []
    health: list[float | None] = []
    bystander: list[int] = []
    placed: list[str] = []
    probes = [
        asyncio.create_task(_probe(stop, verify, lambda: _verify(http, auth, token))),
        asyncio.create_task(_probe(stop, health, lambda: _health(http, auth))),
        asyncio.create_task(_orders(stop, http, api, token, placed)),
        asyncio.create_task(_bystander(stop, http, auth, bystander)),
    ]
    # The attacker is a process of its own, so that its requests do not hold up the
    # probes' own event loop (which would add the bench's queueing to what it measures).
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as attacker:
        statuses, seconds = await asyncio.get_running_loop().run_in_executor(
            attacker, _attack, auth, attempts, concurrency, accounts
        )
    stop.set()
    await asyncio.gather(*probes)
    completed = await _completed(http, api, token, placed)
    ok_idle = sorted(v for v in idle if v is not None)
    ok_verify = sorted(v for v in verify if v is not None)
    ok_health = sorted(h for h in health if h is not None)
    return dict(
        attempts=attempts,
        accounts_attacked=min(accounts, attempts),
        flood_seconds=seconds,
        answers=statuses,
        hashes_computed=int(await _hashes(http, auth) - hashes_before),
        idle_verify_p50_ms=round(percentile(ok_idle, 50), 2),
        idle_verify_p99_ms=round(percentile(ok_idle, 99), 2),
        verify_p50_ms=round(percentile(ok_verify, 50), 2),
        verify_p99_ms=round(percentile(ok_verify, 99), 2),
        verify_failed=verify.count(None),
        health_p50_ms=round(percentile(ok_health, 50), 2),
        health_p99_ms=round(percentile(ok_health, 99), 2),
        health_failed=health.count(None),
        orders_placed=len(placed),
        orders_completed=completed,
        bystander_sign_ins={str(k): v for k, v in sorted(Counter(bystander).items())},
    )


def _attack(
    auth: str, attempts: int, concurrency: int, accounts: int
) -> tuple[dict[str, int], float]:
    """Wrong passwords, `concurrency` at a time, round `accounts` accounts: how many of each
    answer, and the seconds they took."""

    async def flood() -> list[int]:
        free = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(timeout=10) as http:

            async def attack(n: int) -> int:
                async with free:
                    response = await http.post(
                        f"{auth}/auth/token",
                        json={
                            "email": f"victim{n % accounts}@example.com",
                            "password": f"guess-{n}",
                        },
                        headers={"X-Forwarded-For": ATTACKER},
                    )
                    return response.status_code

            return await asyncio.gather(*(attack(n) for n in range(attempts)))

    started = time.monotonic()
    statuses = asyncio.run(flood())
    seconds = round(time.monotonic() - started, 2)
    return {str(k): v for k, v in sorted(Counter(statuses).items())}, seconds


async def _seed(redis: Any, namespace: str) -> None:
    await StockService(redis, namespace).set_product(
        "widget", quantity=100_000, price=Decimal("1.00")
    )
    await PaymentService(redis, namespace).deposit(CUSTOMER, Decimal(100_000))
    await OrderService(redis, namespace).add_vendor(VENDOR)
    users = UserStore(redis, namespace)
    for email in (CUSTOMER, BYSTANDER):
        await users.add(email, PASSWORD, None)


async def _ready(
    http: httpx.AsyncClient, api: str, system: subprocess.Popen[bytes], within: float = 60
) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if (await http.get(f"{api}/ready")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if system.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the system did not become ready (saga up)")
        await asyncio.sleep(0.2)


async def _sign_in(
    http: httpx.AsyncClient, auth: str, email: str, password: str, address: str
) -> httpx.Response:
    return await http.post(
        f"{auth}/auth/token",
        json={"email": email, "password": password},
        headers={"X-Forwarded-For": address},
    )


async def _for(seconds: float, work: Any) -> None:
    """Run `work` this long, then cancel it."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(work, seconds)


async def _timed(call: Any) -> float | None:
    """Milliseconds a call took, None if it failed."""
    began = time.monotonic()
    try:
        response = await call
    except httpx.HTTPError:
        return None
    return round((time.monotonic() - began) * 1000, 2) if response.status_code == 200 else None


def _verify(http: httpx.AsyncClient, auth: str, token: str) -> Any:
    return _timed(http.post(f"{auth}/auth/verify", json={"token": token}))


def _health(http: httpx.AsyncClient, auth: str) -> Any:
    return _timed(http.get(f"{auth}/health"))


async def _probe(stop: asyncio.Event, into: list[float | None], probe: Any) -> None:
    while not stop.is_set():
        into.append(await probe())
        await asyncio.sleep(PROBE_EVERY)


async def _orders(
    stop: asyncio.Event, http: httpx.AsyncClient, api: str, token: str, placed: list[str]
) -> None:
    body = {
        "user_email": CUSTOMER,
        "vendor_email": VENDOR,
        "delivery_address": "1 Flood Road",
        "description": "flood",
        "items": [{"product_id": "widget", "quantity": 1}],
        "payment_method": "Credit Card",
    }
    while not stop.is_set():
        response = await http.post(
            f"{api}/orders/create_order", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        if response.status_code == 202:
            placed.append(str(response.json()["saga_id"]))
        await asyncio.sleep(PROBE_EVERY)


async def _bystander(
    stop: asyncio.Event, http: httpx.AsyncClient, auth: str, into: list[int]
) -> None:
    while not stop.is_set():
        into.append((await _sign_in(http, auth, BYSTANDER, PASSWORD, BYSTANDER_AT)).status_code)
        await asyncio.sleep(0.25)


async def _completed(
    http: httpx.AsyncClient, api: str, token: str, placed: list[str], within: float = 60
) -> int:
    """How many of the orders completed, waiting (bounded) for each to end."""
    deadline = time.monotonic() + within
    completed = 0
    headers = {"Authorization": f"Bearer {token}"}
    for saga_id in placed:
        while True:
            status = (await http.get(f"{api}/sagas/{saga_id}", headers=headers)).json()["status"]
            if status in ("completed", "compensated", "failed") or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        completed += status == "completed"
    return completed


async def _hashes(http: httpx.AsyncClient, auth: str) -> float:
    text = (await http.get(f"{auth}/metrics")).text
    found = re.search(r"^saga_auth_password_hashes_total ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
