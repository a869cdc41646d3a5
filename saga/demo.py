"""`saga demo`: the whole system in one process, with no servers at all.

The same front door, auth service, orchestrator and participants as in production, on
fakeredis (which runs the same Lua scripts) and the in-memory transport. Each loaded
extension's demo seeds its data and gives the requests to make; the demo makes them over
HTTP (in process), as their customers, and waits for every saga to end.
"""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import httpx
from fakeredis import FakeAsyncRedis

from saga.api.app import Parts, create_app
from saga.api.auth import AuthClient
from saga.auth.app import create_auth_app
from saga.auth.users import UserStore
from saga.bootstrap import InProcessWorkers, Wiring
from saga.core.state import SagaState
from saga.extensions import DemoRequest, Extensions
from saga.memory import InMemoryTransport
from saga.settings import Settings
from saga.store import RedisSagaStore

PASSWORD: Final = "demo-password"
# `saga demo --serve`'s admin, to sign in to the console with.
ADMIN: Final = "admin@example.com"


class NothingToDemo(Exception):
    """No loaded extension gives the demo anything to do."""


@dataclass(frozen=True)
class DemoSaga:
    request: DemoRequest
    state: SagaState


@dataclass(frozen=True)
class DemoResult:
    sagas: list[DemoSaga]
    seconds: float

    @property
    def all_as_expected(self) -> bool:
        return all(s.state.status == s.request.expect for s in self.sagas)


class EmbeddedSystem:
    """Every part of the system wired in this process on fakeredis and in-memory queues."""

    def __init__(self, settings: Settings, extensions: Extensions | None = None) -> None:
        self.settings = settings
        self.redis = FakeAsyncRedis(decode_responses=True)
        self.wiring = Wiring(
            settings, extensions=extensions, redis=self.redis, transport=lambda _: self.transport
        )
        self.transport = InMemoryTransport(self.wiring.topology)
        self.workers = InProcessWorkers(self.wiring)
        self.store = self.wiring.store

    @property
    def requests(self) -> list[DemoRequest]:
        """Every request the loaded extensions' demos make, in order."""
        return [r for demo in self.wiring.extensions.demos for r in demo.requests]

    async def start(self) -> None:
        await self.workers.start()

    async def stop(self) -> None:
        await self.workers.stop()
        await self.redis.aclose()

    async def seed(self) -> None:
        """Each extension's data, and a user for each customer of a request."""
        for demo in self.wiring.extensions.demos:
            await demo.seed(self.redis, self.settings)
        users = UserStore(self.redis, self.settings.namespace)
        for customer in dict.fromkeys(r.customer for r in self.requests):
            await users.add(customer, PASSWORD, [])


async def run_demo(
    settings: Settings,
    *,
    orders: int,
    progress: Callable[[int, int], None],
    extensions: Extensions | None = None,
) -> DemoResult:
    """Seed, make `orders` requests through the front door (the demos' requests in
    turn), wait for every saga to end; raises NothingToDemo when no demo is loaded."""
    system = EmbeddedSystem(settings, extensions)
    if not system.requests:
        raise NothingToDemo(
            "no loaded extension gives the demo anything to do (see SAGA_EXTENSIONS)"
        )
    await system.start()
    try:
        await system.seed()
        auth_app = create_auth_app(settings, redis=system.redis)
        auth_client = AuthClient(
            "http://auth", timeout=10, transport=httpx.ASGITransport(app=auth_app)
        )
        api_app = create_app(settings, parts=Parts(system.wiring, system.transport, auth_client))
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
            placed = await _place(api, auth, system.requests, orders)
            states = await _wait_terminal(system.store, placed, progress)
            seconds = time.monotonic() - started
        await auth_client.close()
        return DemoResult(
            sagas=[DemoSaga(request, states[saga_id]) for saga_id, request in placed],
            seconds=seconds,
        )
    finally:
        await system.stop()


async def _place(
    api: httpx.AsyncClient, auth: httpx.AsyncClient, requests: list[DemoRequest], count: int
) -> list[tuple[str, DemoRequest]]:
    tokens = {}
    for customer in dict.fromkeys(r.customer for r in requests):
        response = await auth.post("/auth/token", json={"email": customer, "password": PASSWORD})
        response.raise_for_status()
        tokens[customer] = response.json()["access_token"]
    placed = []
    for n in range(count):
        request = requests[n % len(requests)]
        response = await api.post(
            request.path,
            headers={"Authorization": f"Bearer {tokens[request.customer]}"},
            json=dict(request.body),
        )
        response.raise_for_status()
        placed.append((response.json()["saga_id"], request))
    return placed


async def _wait_terminal(
    store: RedisSagaStore,
    placed: list[tuple[str, DemoRequest]],
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


async def serve_demo(
    settings: Settings,
    *,
    port: int,
    orders: int,
    serving: Callable[[str], None],
    extensions: Extensions | None = None,
) -> None:
    """Run the embedded system with the front door (and its console) on a local port,
    make `orders` requests through it, call `serving` with its URL, and keep serving
    until interrupted (Ctrl-C)."""
    import uvicorn

    system = EmbeddedSystem(settings, extensions)
    await system.start()
    try:
        await system.seed()
        await UserStore(system.redis, settings.namespace).add(ADMIN, PASSWORD, ["admin"])
        auth_app = create_auth_app(settings, redis=system.redis)
        auth_client = AuthClient(
            "http://auth", timeout=10, transport=httpx.ASGITransport(app=auth_app)
        )
        api_app = create_app(settings, parts=Parts(system.wiring, system.transport, auth_client))
        server = uvicorn.Server(
            uvicorn.Config(api_app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
        )
        base = f"http://127.0.0.1:{port}"
        async with auth_app.router.lifespan_context(auth_app):
            serve = asyncio.create_task(server.serve())
            # uvicorn tells that it listens by a flag only.
            while not server.started and not serve.done():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            if serve.done():
                await serve  # it could not start: its error
                return
            async with (
                httpx.AsyncClient(base_url=base) as api,
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=auth_app), base_url="http://auth"
                ) as auth,
            ):
                await _place(api, auth, system.requests, orders)
            serving(f"{base}/console")
            await serve
        await auth_client.close()
    finally:
        await system.stop()
