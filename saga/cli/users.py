"""`saga auth add-user`, `revoke` and `rotate-key`: the auth service's users, their
tokens and its signing keys."""

import time
from typing import cast

import structlog

from saga.auth.keys import KeyRing
from saga.auth.revocations import Revocations
from saga.auth.users import SavedUser, UserStore
from saga.cli.output import CliError, console, print_json, settings, with_redis
from saga.connections import AnyRedis
from saga.logs import configure_logging
from saga.settings import Settings


def add_user(address: str, password: str, roles: list[str] | None, json_out: bool) -> None:
    """Create or update an auth user (`saga auth add-user`); the values are parsed. With
    no roles given, an existing user keeps its own."""

    async def work(redis: AnyRedis, settings: Settings) -> SavedUser:
        return await UserStore(redis, settings.namespace).add(address, password, roles)

    user = with_redis(work)
    if json_out:
        print_json(user)
    else:
        done = "created" if user.created else "updated"
        console().print(f"user {user.email} {done}, roles: {', '.join(user.roles)}")


def revoke(address: str, json_out: bool) -> None:
    """Revoke every token of a user issued up to now (`saga auth revoke`)."""

    async def work(redis: AnyRedis, settings: Settings) -> bool:
        if await UserStore(redis, settings.namespace).get(address) is None:
            return False
        await Revocations(redis, settings.namespace).revoke_user(address, now=time.time())
        return True

    if not with_redis(work):
        raise CliError(f"no user {address.lower()} (saga auth add-user makes one)")
    _audit().info("token revoked", scope="all", email=address.lower(), by="saga auth revoke")
    if json_out:
        print_json({"revoked": "all", "email": address.lower()})
    else:
        console().print(f"every token of {address.lower()} issued until now is revoked")


def rotate_key(json_out: bool) -> None:
    """Make a new signing key current (`saga auth rotate-key`)."""
    config = settings()
    if config.auth_secret is not None:
        raise CliError(
            "the signing key is SAGA_AUTH_SECRET, which the auth service does not rotate: "
            "unset it to keep rotating keys in Redis (docs/operations.md)"
        )

    async def work(redis: AnyRedis, settings: Settings) -> tuple[str, str | None, list[str]]:
        return await KeyRing(redis, settings.namespace).rotate(
            now=time.time(), token_ttl=settings.token_ttl
        )

    kid, retired, dropped = with_redis(work)
    _audit().info("signing key rotated", kid=kid, retired=retired, dropped=dropped)
    if json_out:
        print_json({"kid": kid, "retired": retired, "dropped": dropped})
        return
    console().print(f"signing key {kid} is current")
    if retired is not None:
        console().print(f"key {retired} verifies the tokens it signed until they expire")
    if dropped:
        console().print(f"dropped keys past use: {', '.join(dropped)}")


def _audit() -> "structlog.stdlib.BoundLogger":
    """The audit log of an operator's action: on stderr, as the services log."""
    configure_logging(settings())
    return cast("structlog.stdlib.BoundLogger", structlog.get_logger("saga.auth"))
