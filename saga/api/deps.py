"""What the front door's routes depend on: the caller, within their rate limit, and
the parts the app was wired with."""

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from saga.api.auth import Caller, current_caller
from saga.api.limits import RateLimited, retry_after
from saga.registry import DefinitionRegistry

CallerDep = Annotated[Caller, Depends(current_caller)]


async def limited(caller: CallerDep, request: Request) -> Caller:
    """The caller, within their rate limit for writes (429 past it)."""
    try:
        await request.app.state.limiter.take(caller.email)
    except RateLimited as exc:
        raise HTTPException(
            429, str(exc), headers={"Retry-After": retry_after(exc.retry_after)}
        ) from None
    return caller


LimitedCaller = Annotated[Caller, Depends(limited)]


def registry_of(request: Request) -> DefinitionRegistry:
    """The app's saga definitions."""
    registry: DefinitionRegistry = request.app.state.registry
    return registry


def plausible_id(saga_id: str) -> bool:
    """Whether a saga id is one worth looking up (the store is not asked about garbage)."""
    return 0 < len(saga_id) <= 128 and saga_id.replace("-", "").replace("_", "").isalnum()
