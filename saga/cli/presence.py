"""An empty answer in a namespace that shows no sign of life: likely a mistyped
SAGA_NAMESPACE, said as such instead of as an empty system.

Each extension says which of its keys show its data is there (a product set up, a
vendor added): a namespace holding only an extension's data is alive, and an engine-only
check would call it mistyped."""

from redis.asyncio import Redis

from saga.auth.keys import KeyRing
from saga.cli.output import CliError
from saga.extensions import selected
from saga.namespaces import nothing_runs
from saga.registry import participants_key
from saga.settings import Settings
from saga.store import RedisSagaStore, definitions_key


def _presence_keys(redis: Redis, settings: Settings) -> list[str]:
    namespace = settings.namespace
    return [
        RedisSagaStore(redis, namespace).index_key,  # a saga ever started (and not trimmed)
        definitions_key(namespace),  # a definition applied
        participants_key(namespace),  # ... and never shrinks, even once it is deleted
        *KeyRing(redis, namespace).keys,  # the auth service ever ran
        *selected(settings).presence_keys(redis, namespace),
    ]


async def refuse_if_lifeless(redis: Redis, settings: Settings, *, empty: str) -> None:
    """Raise CliError (`<empty>: nothing runs in namespace ...`) when nothing of the
    namespace is in Redis: no saga, definition, auth key, nor any extension's data. One
    EXISTS, asked only when a list came back empty."""
    if not await redis.exists(*_presence_keys(redis, settings)):
        raise CliError(f"{empty}: {nothing_runs(settings.namespace)}")
