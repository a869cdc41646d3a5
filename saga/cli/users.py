"""`saga auth add-user`: the auth service's users."""

from redis.asyncio import Redis

from saga.auth.users import SavedUser, UserStore
from saga.cli.output import console, print_json, with_redis
from saga.settings import Settings


def add_user(address: str, password: str, roles: list[str] | None, json_out: bool) -> None:
    """Create or update an auth user (`saga auth add-user`); the values are parsed. With
    no roles given, an existing user keeps its own."""

    async def work(redis: Redis, settings: Settings) -> SavedUser:
        return await UserStore(redis, settings.namespace).add(address, password, roles)

    user = with_redis(work)
    if json_out:
        print_json(user)
    else:
        done = "created" if user.created else "updated"
        console().print(f"user {user.email} {done}, roles: {', '.join(user.roles)}")
