"""The shop as the engine's first user: its extension registers the order saga, the
contracts and participants of stock, payment and order, its route, its data commands and
its demo, through the same public API any team's extension uses."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import TYPE_CHECKING, Final

from saga.connections import AnyRedis
from saga.extensions import Extension, ParticipantLike
from saga.participant import Participant, ParticipantRuntime
from saga.settings import Settings
from saga.transport import Transport
from services.demo import DEMO
from services.messages import CATALOGUE
from services.order import OrderService, order
from services.payment import payment
from services.stock import StockService, stock

if TYPE_CHECKING:
    import typer
    from fastapi import APIRouter

# The shop's definition documents, by source name.
DEFINITIONS: Final = {
    "order.yaml": (files("services.definitions") / "order.yaml").read_text(encoding="utf-8")
}


@dataclass(frozen=True)
class Runs:
    """A shop participant as the engine runs one: on the SDK's runtime, its records in
    the namespace for the retention."""

    participant: Participant
    redis: AnyRedis
    settings: Settings

    @property
    def name(self) -> str:
        return self.participant.name

    async def start(self, transport: Transport) -> None:
        await ParticipantRuntime(
            self.participant,
            transport,
            self.redis,
            namespace=self.settings.namespace,
            retention=self.settings.retention,
        ).run()


def _participant(participant: Participant) -> Callable[[AnyRedis, Settings], ParticipantLike]:
    def make(redis: AnyRedis, settings: Settings) -> ParticipantLike:
        return Runs(participant, redis, settings)

    return make


def _routers() -> Sequence["APIRouter"]:
    from services.api import router

    return [router]


def _commands() -> Mapping[str, "typer.Typer"]:
    from services.cli import order_app, payment_app, stock_app

    return {"stock": stock_app, "payment": payment_app, "order": order_app}


def _presence(redis: AnyRedis, namespace: str) -> list[str]:
    # A product set up, a vendor added or an order made.
    return [
        *StockService(redis, namespace).presence_keys(),
        *OrderService(redis, namespace).presence_keys(),
    ]


SHOP: Final = Extension(
    name="shop",
    definitions=DEFINITIONS,
    catalogue=CATALOGUE,
    participants={
        "stock": _participant(stock),
        "payment": _participant(payment),
        "order": _participant(order),
    },
    routers=_routers,
    commands=_commands,
    presence=_presence,
    demo=DEMO,
)
