"""`saga demo`: the whole system in one process, with no servers at all.

The same front door, auth service, orchestrator and participants as in production, on
fakeredis (which runs the same Lua scripts) and the in-memory transport. It seeds a
shop, places a mix of orders over HTTP (in process), and waits for every saga to end.
"""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import httpx
from fakeredis import FakeAsyncRedis

from contracts.topology import Topology
from saga.api.app import Parts, create_app
from saga.api.auth import AuthClient
from saga.bootstrap import InProcessWorkers
from saga.core.state import SagaState
from saga.memory import InMemoryTransport
from saga.settings import Settings
from saga.store import RedisSagaStore
from services.auth.app import create_auth_app
from services.auth.users import UserStore
from services.order import OrderService
from services.payment import PaymentService
from services.stock import StockService

VENDOR: Final = "shop@example.com"
PASSWORD: Final = "demo-password"


@dataclass(frozen=True)
class Scenario:
    """One kind of order the demo places, and how it should end."""

    name: str
    customer: str
    items: list[dict[str, Any]]
    payment_method: str = "Credit Card"
    vendor: str = VENDOR
    expect: str = "completed"


SCENARIOS: Final = (
    Scenario("completes", "alice@example.com", [{"product_id": "apple", "quantity": 2}]),
    Scenario(
        "cash on delivery",
        "dave@example.com",
        [{"product_id": "pear", "quantity": 1}],
        payment_method="Cash on Delivery",
    ),
    Scenario(
        "out of stock",
        "carol@example.com",
        [{"product_id": "apple", "quantity": 1}, {"product_id": "truffle", "quantity": 3}],
        expect="compensated",
    ),
    Scenario(
        "insufficient funds",
        "bob@example.com",
        [{"product_id": "pear", "quantity": 2}],
        expect="compensated",
    ),
    Scenario(
        "unknown vendor",
        "erin@example.com",
        [{"product_id": "apple", "quantity": 1}],
        vendor="nobody@example.com",
        expect="compensated",
    ),
)
BALANCES: Final = {
    "alice@example.com": "10000.00",
    "dave@example.com": "0.00",
    "carol@example.com": "500.00",
    "bob@example.com": "1.00",
    "erin@example.com": "500.00",
}


@dataclass(frozen=True)
class DemoSaga:
    scenario: Scenario
    state: SagaState


@dataclass(frozen=True)
class DemoResult:
    sagas: list[DemoSaga]
    seconds: float

    @property
    def all_as_expected(self) -> bool:
        return all(s.state.status == s.scenario.expect for s in self.sagas)


class EmbeddedSystem:
    """Every part of the system wired in this process on fakeredis and in-memory queues."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = FakeAsyncRedis(decode_responses=True)
        self.transport = InMemoryTransport(Topology(settings.namespace))
        self.workers = InProcessWorkers(settings, self.redis, lambda: self.transport)
        self.store = self.workers.store

    async def start(self) -> None:
        await self.workers.start()

    async def stop(self) -> None:
        await self.workers.stop()
        await self.redis.aclose()

    async def seed(self) -> None:
        namespace = self.settings.namespace
        stock = StockService(self.redis, namespace)
        await stock.set_product("apple", quantity=100_000, price=Decimal("2.50"))
        await stock.set_product("pear", quantity=100_000, price=Decimal("4.00"))
        await stock.set_product("truffle", quantity=1, price=Decimal("99.00"))
        payment = PaymentService(self.redis, namespace)
        for customer, balance in BALANCES.items():
            if Decimal(balance) > 0:
                await payment.deposit(customer, Decimal(balance))
        await OrderService(self.redis, namespace).add_vendor(VENDOR)
        users = UserStore(self.redis, namespace)
        for customer in BALANCES:
            await users.add(customer, PASSWORD, [])


async def run_demo(
    settings: Settings, *, orders: int, progress: Callable[[int, int], None]
) -> DemoResult:
    """Seed, place `orders` orders through the front door, wait for every saga to end."""
    system = EmbeddedSystem(settings)
    await system.start()
    try:
        await system.seed()
        auth_app = create_auth_app(settings, redis=system.redis)
        auth_client = AuthClient(
            "http://auth", timeout=10, transport=httpx.ASGITransport(app=auth_app)
        )
        api_app = create_app(settings, parts=Parts(system.redis, system.transport, auth_client))
        async with (
            auth_app.router.lifespan_context(auth_app),
            api_app.router.lifespan_context(api_app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=api_app), base_url="http://api"
            ) as api,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=auth_app), base_url="http://auth"
            ) as auth,
        ):
            started = time.monotonic()
            placed = await _place(api, auth, orders)
            states = await _wait_terminal(system.store, placed, progress)
            seconds = time.monotonic() - started
        await auth_client.close()
        return DemoResult(
            sagas=[DemoSaga(scenario, states[saga_id]) for saga_id, scenario in placed],
            seconds=seconds,
        )
    finally:
        await system.stop()


async def _place(
    api: httpx.AsyncClient, auth: httpx.AsyncClient, orders: int
) -> list[tuple[str, Scenario]]:
    tokens = {}
    for customer in BALANCES:
        response = await auth.post("/auth/token", json={"email": customer, "password": PASSWORD})
        response.raise_for_status()
        tokens[customer] = response.json()["access_token"]
    placed = []
    for n in range(orders):
        scenario = SCENARIOS[n % len(SCENARIOS)]
        response = await api.post(
            "/orders/create_order",
            headers={"Authorization": f"Bearer {tokens[scenario.customer]}"},
            json={
                "vendor_email": scenario.vendor,
                "delivery_address": "1 Demo Street",
                "items": scenario.items,
                "payment_method": scenario.payment_method,
            },
        )
        response.raise_for_status()
        placed.append((response.json()["saga_id"], scenario))
    return placed


async def _wait_terminal(
    store: RedisSagaStore,
    placed: list[tuple[str, Scenario]],
    progress: Callable[[int, int], None],
    *,
    within: float = 60,
) -> dict[str, SagaState]:
    ids = [saga_id for saga_id, _ in placed]
    deadline = time.monotonic() + within
    while True:
        states = {s.saga_id: s for s in await store.load_many(ids)}
        done = sum(1 for s in states.values() if s.terminal)
        progress(done, len(ids))
        if done == len(ids) or time.monotonic() > deadline:
            return states
        await asyncio.sleep(0.02)
