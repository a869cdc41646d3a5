"""An empty answer in a namespace that shows no sign of life: likely a mistyped
SAGA_NAMESPACE, said as such instead of as an empty system."""

from redis.asyncio import Redis

from saga.cli.output import CliError
from saga.namespaces import nothing_runs
from saga.registry import participants_key
from saga.store import RedisSagaStore, definitions_key
from services.auth.users import UserStore
from services.order import OrderService
from services.stock import StockService


def _presence_keys(redis: Redis, namespace: str) -> list[str]:
    return [
        RedisSagaStore(redis, namespace).index_key,  # a saga ever started (and not trimmed)
        definitions_key(namespace),  # a definition applied
        participants_key(namespace),  # ... and never shrinks, even once it is deleted
        *UserStore(redis, namespace).presence_keys(),  # the auth service ever ran
        *StockService(redis, namespace).presence_keys(),
        *OrderService(redis, namespace).presence_keys(),
    ]


async def refuse_if_lifeless(redis: Redis, namespace: str, *, empty: str) -> None:
    """Raise CliError (`<empty>: nothing runs in namespace ...`) when nothing of the
    namespace is in Redis: no saga, definition, auth key, product, vendor or order. One
    EXISTS, asked only when a list came back empty."""
    if not await redis.exists(*_presence_keys(redis, namespace)):
        raise CliError(f"{empty}: {nothing_runs(namespace)}")
