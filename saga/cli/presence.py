"""An empty answer in a namespace that shows no sign of life: likely a mistyped
SAGA_NAMESPACE, said as such instead of as an empty system.

Each extension says which of its keys show its data is there (a product set up, a
vendor added): a namespace holding only an extension's data is alive, and an engine-only
check would call it mistyped."""

from saga.auth.keys import KeyRing
from saga.cli.output import CliError
from saga.connections import AnyRedis
from saga.extensions import selected
from saga.keyspace import keyspace_of
from saga.namespaces import nothing_runs
from saga.registry import participants_key
from saga.settings import Settings


def _presence_keys(redis: AnyRedis, settings: Settings) -> list[str]:
    namespace = settings.namespace
    keyspace = keyspace_of(redis, namespace, buckets=settings.redis_buckets)
    return [
        *(b.sagas for b in keyspace.buckets),  # a saga ever started (and not trimmed)
        keyspace.shared("definitions"),  # a definition applied
        participants_key(redis, namespace),  # ... and never shrinks, even once it is deleted
        *KeyRing(redis, namespace).keys,  # the auth service ever ran
        *selected(settings).presence_keys(redis, namespace),
    ]


async def refuse_if_lifeless(redis: AnyRedis, settings: Settings, *, empty: str) -> None:
    """Raise CliError (`<empty>: nothing runs in namespace ...`) when nothing of the
    namespace is in Redis: no saga, definition, auth key, nor any extension's data. One
    EXISTS, asked only when a list came back empty."""
    if not await redis.exists(*_presence_keys(redis, settings)):
        raise CliError(f"{empty}: {nothing_runs(settings.namespace)}")
