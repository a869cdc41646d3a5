"""The front door: start sagas, show them to their owners; the loaded extensions' routes."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError, SlotNotCoveredError

from saga.api import catalog
from saga.api.auth import AuthClient, Caller
from saga.api.deps import CallerDep, LimitedCaller, plausible_id, registry_of
from saga.api.idempotency import KEY_TTL, IdempotencyKeys
from saga.api.limits import BodySizeLimit, Rate, RateLimiter
from saga.api.media import JsonBodyRoute
from saga.api.problems import answer_without_input
from saga.api.schemas import errors
from saga.bootstrap import Wiring
from saga.console.app import mount_console
from saga.console.sessions import SessionStore
from saga.core.state import SagaState, SagaStatus
from saga.deadletters import DeadLetterQueue
from saga.extensions import selected
from saga.operations import NotCancellable, cancel
from saga.orchestrator import Orchestrator
from saga.settings import Settings
from saga.store import RedisSagaStore
from saga.transport import Transport
from saga.views import EventView, SagaView, saga_view


@dataclass(frozen=True)
class Parts:
    """What the API runs on, when the caller provides it (the embedded demo) rather than
    the API connecting to the servers in the settings. The caller closes them."""

    wiring: Wiring
    transport: Transport
    auth: AuthClient


def create_app(settings: Settings, *, parts: Parts | None = None) -> FastAPI:
    """The API, wired from settings, with the routes of the loaded extensions;
    connections open when the app starts."""
    extensions = parts.wiring.extensions if parts is not None else selected(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if parts is not None:
            _wire(app, parts.wiring, parts.transport, parts.auth)
            app.state.dead_letters = None  # no RabbitMQ: nothing is parked
            yield
            return
        wiring = Wiring(settings, extensions=extensions)
        await wiring.store.check_layout()  # on a Redis Cluster: the sagas are where it looks
        transport = wiring.transport("api")
        # Serve even while RabbitMQ is away: sagas start durably in Redis, /ready says
        # what is missing, and the orchestrator's relay publishes once it is back.
        connecting = asyncio.create_task(transport.keep_connecting())
        _wire(
            app,
            wiring,
            transport,
            AuthClient(
                settings.auth_url,
                timeout=settings.auth_timeout,
                cache_ttl=settings.auth_cache_ttl,
            ),
        )
        app.state.dead_letters = DeadLetterQueue(settings.rabbitmq_url, wiring.topology)
        try:
            yield
        finally:
            connecting.cancel()
            await app.state.dispatcher.settle()
            await app.state.auth.close()
            await transport.close()
            await wiring.aclose()

    def _wire(app: FastAPI, wiring: Wiring, transport: Transport, auth: AuthClient) -> None:
        app.state.redis, app.state.transport, app.state.auth = wiring.redis, transport, auth
        # A key must not outlive its saga: once the saga is trimmed, the key would start
        # it afresh.
        app.state.keys = IdempotencyKeys(
            wiring.redis, wiring.store.keyspace, ttl=min(KEY_TTL, int(settings.retention))
        )
        app.state.limiter = RateLimiter(
            wiring.redis, settings.namespace, Rate.parse(settings.rate_limit)
        )
        dispatcher = app.state.dispatcher = wiring.dispatcher(transport)
        app.state.store = wiring.store
        app.state.registry = wiring.registry
        # The embedded system's orchestrator consumes the replies in this process.
        app.state.starter = wiring.starter(dispatcher, replies_here=parts is not None)
        app.state.orchestrator = wiring.orchestrator(dispatcher)
        app.state.console_sessions = SessionStore(wiring.redis, settings.namespace)

    app = FastAPI(
        title="saga front door",
        version="0.1.0",
        description="Starts sagas of any registered type and shows them to their owners.",
        lifespan=lifespan,
    )
    app.router.route_class = JsonBodyRoute
    answer_without_input(app)

    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    app.include_router(catalog.router)
    for router in extensions.routers():
        app.include_router(router)
    mount_console(app)

    @app.exception_handler(RedisError)
    @app.exception_handler(SlotNotCoveredError)  # a cluster failing over
    async def store_down(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"saga store unavailable: {type(exc).__name__}"}, 503)

    async def view_of(state: SagaState, request: Request) -> SagaView:
        definition = await registry_of(request).get(state.saga_type, state.definition_version)
        return saga_view(state, definition)

    async def visible_saga(saga_id: str, caller: Caller, request: Request) -> SagaState:
        store: RedisSagaStore = request.app.state.store
        state = await store.load(saga_id) if plausible_id(saga_id) else None
        # Someone else's saga is "not found", not "forbidden": ids are not confirmed.
        if state is None or not (caller.is_admin or state.customer == caller.email):
            raise HTTPException(404, f"no saga {saga_id}")
        return state

    @app.get("/sagas", response_model=list[SagaView], responses=errors(401, 422, 503))
    async def list_sagas(
        caller: CallerDep,
        request: Request,
        status: SagaStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> list[SagaView]:
        """The caller's sagas, newest first (an admin's: everyone's)."""
        store: RedisSagaStore = request.app.state.store
        customer = None if caller.is_admin else caller.email
        states = await store.find(status=status, customer=customer, limit=limit)
        return [await view_of(s, request) for s in states]

    @app.get("/sagas/{saga_id}", response_model=SagaView, responses=errors(401, 404, 503))
    async def get_saga(saga_id: str, caller: CallerDep, request: Request) -> SagaView:
        state = await visible_saga(saga_id, caller, request)
        return await view_of(state, request)

    @app.get(
        "/sagas/{saga_id}/events",
        response_model=list[EventView],
        responses=errors(401, 404, 503),
    )
    async def get_events(saga_id: str, caller: CallerDep, request: Request) -> list[EventView]:
        await visible_saga(saga_id, caller, request)
        store: RedisSagaStore = request.app.state.store
        return [EventView.model_validate(r.to_wire()) for r in await store.events(saga_id)]

    @app.post(
        "/sagas/{saga_id}/cancel",
        status_code=202,
        response_model=SagaView,
        responses=errors(401, 404, 409, 429, 503),
    )
    async def cancel_saga(saga_id: str, caller: LimitedCaller, request: Request) -> SagaView:
        """Stop a running saga: what it did is undone, and it ends `compensated`."""
        state = await visible_saga(saga_id, caller, request)
        definition = await registry_of(request).get(state.saga_type, state.definition_version)
        orchestrator: Orchestrator = request.app.state.orchestrator
        try:
            await cancel(orchestrator, definition, state, by=caller.email)
        except NotCancellable as exc:
            raise HTTPException(409, str(exc)) from None
        after = await visible_saga(saga_id, caller, request)
        return await view_of(after, request)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus metrics of this process."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/ready",
        responses={503: {"description": "a server is unreachable; `detail` names it"}},
    )
    async def ready(request: Request) -> JSONResponse:
        checks = {
            "redis": await _redis_ok(request),
            "rabbitmq": "ok" if request.app.state.transport.connected else "unreachable",
            "auth": "ok" if await request.app.state.auth.healthy() else "unreachable",
        }
        failing = [name for name, result in checks.items() if result != "ok"]
        body = {"status": "ready" if not failing else "unavailable", "checks": checks}
        if failing:
            body["detail"] = f"not reachable: {', '.join(failing)}"
        return JSONResponse(body, status_code=503 if failing else 200)

    return app


async def _redis_ok(request: Request) -> str:
    try:
        await asyncio.wait_for(request.app.state.redis.ping(), timeout=2)
    except (RedisError, OSError, TimeoutError):
        return "unreachable"
    return "ok"
