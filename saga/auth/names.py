"""Where the auth service keeps its keys in Redis: under `<namespace>:auth`.

On a Redis Cluster they share the namespace's hash tag (`<namespace>:{<namespace>}:auth`),
so that a script or transaction may touch any of them together (a failed sign-in counts
for its account and its address at once; a revocation and its count go in one
transaction). On one Redis the names are as they always were.
"""

from saga.connections import AnyRedis
from saga.keyspace import keyspace_of


def auth_prefix(redis: AnyRedis, namespace: str) -> str:
    """What every auth key of the namespace starts with, on this client's Redis."""
    return keyspace_of(redis, namespace).shared("auth")
