"""A participant's memory in Redis: the reply per idempotency key, the compensated-first
marker and the lease per step, each read and written by one Lua script.

Per idempotency key, `handled:<key>` holds the reply given (`{"type", "payload"}`), kept
for the retention. Per unit of work (a saga's step: both its command and its
compensation), `compensated:<unit>` says the compensation was answered, so a late
command is refused; `lease:<unit>` names the one handling that is running the step's
handler (when it is not atomic), so two replicas never run it at once.
"""

import asyncio
import os
from collections.abc import Sequence
from typing import Any, Final, Generic, NamedTuple, TypeVar

from pydantic import BaseModel

from contracts.envelope import Envelope
from contracts.idempotency import IdempotencyKey
from saga.connections import AnyRedis
from saga.participant.declaration import Registration
from saga.scripts import Script, ScriptBatcher

R = TypeVar("R", bound=BaseModel)

# What a script answers when another handling holds the step's lease: try again soon.
BUSY: Final = "busy"
GO: Final = "go"

# KEYS: handled, marker, lease. ARGV: token, lease ms, ttl, action, late record.
# The stored reply; or `busy`; or, for a command whose compensation came first, the
# refusal, stored; or `go`, with the lease taken.
_BEGIN: Final = """
local found = redis.call('MGET', KEYS[1], KEYS[3], KEYS[2])
local done, holder, marked = found[1], found[2], found[3]
if done then return done end
if holder and holder ~= ARGV[1] then return 'busy' end
if ARGV[4] == 'execute' and marked then
  redis.call('SET', KEYS[1], ARGV[5], 'EX', ARGV[3])
  return ARGV[5]
end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
return 'go'
"""

# KEYS: handled, marker, lease. ARGV: token, ttl, record, action, late record or ''.
# Stores the record unless a reply is stored already (then that one stands); a late
# record given is stored instead where the compensation came first; a compensation
# leaves its marker. The lease, if this handling holds it, is let go. The stored reply.
_FINISH: Final = """
local found = redis.call('MGET', KEYS[1], KEYS[3], KEYS[2])
local done, holder, marked = found[1], found[2], found[3]
if not done then
  done = ARGV[3]
  if ARGV[5] ~= '' and marked then done = ARGV[5] end
  redis.call('SET', KEYS[1], done, 'EX', ARGV[2])
  if ARGV[4] == 'compensate' then redis.call('SET', KEYS[2], '1', 'EX', ARGV[2]) end
end
if holder == ARGV[1] then redis.call('DEL', KEYS[3]) end
return done
"""

# KEYS: lease. ARGV: token. Let the lease go, if this handling holds it.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: lease. ARGV: token, lease ms. Keep holding the lease; 0 if it was lost.
_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# Before an EffectScript's body: the same checks as _BEGIN, and `ok` and `refuse`, which
# store the reply (and a compensation's marker) in the same script as the effect. The
# SDK's keys and arguments are taken off, so the body's own start at KEYS[1], ARGV[1].
# KEYS: handled, marker, lease, then the body's. ARGV: token, ttl, reply type, action,
# late record, then the body's.
EFFECT_PRELUDE: Final = """
local handled = table.remove(KEYS, 1)
local marker = table.remove(KEYS, 1)
local lease = table.remove(KEYS, 1)
local token = table.remove(ARGV, 1)
local ttl = table.remove(ARGV, 1)
local success = table.remove(ARGV, 1)
local compensating = table.remove(ARGV, 1) == 'compensate'
local late = table.remove(ARGV, 1)
local found = redis.call('MGET', handled, lease, marker)
local done, holder, marked = found[1], found[2], found[3]
if done then return done end
if holder and holder ~= token then return 'busy' end
if not compensating and marked then
  redis.call('SET', handled, late, 'EX', ttl)
  return late
end
local function store(kind, payload)
  local encoded = cjson.encode({type = kind, payload = payload})
  redis.call('SET', handled, encoded, 'EX', ttl)
  if compensating then redis.call('SET', marker, '1', 'EX', ttl) end
  return encoded
end
local function ok(payload)
  return store(success, payload or {})
end
local function refuse(reason, detail)
  return store('CommandFailed', {reason = reason, detail = detail})
end
"""


class EffectScript(Generic[R]):
    """A Lua script that does a handler's effect and records its reply in one go, run
    with `ctx.atomically(script, keys=..., args=...)`.

    The body ends in `return ok(payload)` (the reply `reply`, payload a Lua table of its
    fields) or `return refuse(reason, detail)` (a refusal); both store the reply for the
    command's idempotency key in the same script. Before the body runs, the SDK answers a
    repeat with the reply stored for it, and refuses a command whose compensation came
    first, so the body runs at most once per key. `ttl` (the retention, in seconds) is
    there for the body's own keys. A Lua error (`redis.error_reply`, a bug) stores
    nothing: what the body wrote before it stays, and the command is answered
    `participant_error`.
    """

    def __init__(self, body: str, *, reply: type[R]) -> None:
        self.lua = EFFECT_PRELUDE + body
        self.reply = reply


class Unit(NamedTuple):
    """The Redis keys of one command's handling: its reply, and its step's marker and lease."""

    handled: str
    marker: str
    lease: str

    @property
    def keys(self) -> list[str]:
        return [self.handled, self.marker, self.lease]


def unit_of(
    prefix: str, envelope: Envelope, parsed: IdempotencyKey | None, registration: Registration
) -> Unit:
    """Where the command's records live, under the participant's key `prefix`
    (`Participant.key(namespace)`). Its step is the saga's step its idempotency key
    names (a command and its compensation share it); for a key of another shape, the
    saga and the command type (the one a compensation undoes). `parsed`: what the
    command's key names."""
    key = envelope.idempotency_key or envelope.message_id
    if parsed is not None:
        step = f"{parsed.saga_id}:{parsed.step}"
    else:
        step = f"{envelope.saga_id}:{registration.compensates or registration.type}"
    return Unit(f"{prefix}:handled:{key}", f"{prefix}:compensated:{step}", f"{prefix}:lease:{step}")


def new_token() -> str:
    """A handling's own name for the lease: no two handlings share one."""
    return os.urandom(12).hex()


class Records:
    """The record scripts of one participant, run through one batcher."""

    def __init__(self, redis: AnyRedis, *, ttl: int, lease: float) -> None:
        self.redis = redis
        self.ttl = ttl
        self.lease_ms = max(1, int(lease * 1000))
        self._batcher = ScriptBatcher(redis)
        self._begin = self._batcher.register(_BEGIN)
        self._finish = self._batcher.register(_FINISH)
        self._release = self._batcher.register(_RELEASE)
        self._renew = self._batcher.register(_RENEW)
        self._effects: dict[str, Script] = {}

    async def begin(self, unit: Unit, token: str, registration: Registration) -> str:
        """The stored reply, BUSY, or GO (the lease is this handling's)."""
        return str(
            await self._begin(
                keys=unit.keys,
                args=[
                    token,
                    self.lease_ms,
                    self.ttl,
                    registration.action,
                    registration.late_record or "",
                ],
            )
        )

    async def finish(
        self, unit: Unit, token: str, registration: Registration, record: str, *, late: bool
    ) -> str:
        """Store `record` unless a reply is stored (`late`: unless the compensation came
        first, then the late refusal); let the lease go. The stored reply."""
        return str(
            await self._finish(
                keys=unit.keys,
                args=[
                    token,
                    self.ttl,
                    record,
                    registration.action,
                    (registration.late_record or "") if late else "",
                ],
            )
        )

    async def release(self, unit: Unit, token: str) -> None:
        """Let the lease go, if this handling holds it."""
        await self._release(keys=[unit.lease], args=[token])

    async def renew(self, unit: Unit, token: str) -> bool:
        """Hold the lease for another lease period; False if it was lost."""
        return bool(await self._renew(keys=[unit.lease], args=[token, self.lease_ms]))

    async def stored(self, unit: Unit) -> str | None:
        """The reply stored for the command's key, if any."""
        raw = await self.redis.get(unit.handled)
        return None if raw is None else str(raw)

    async def effect(
        self,
        script: EffectScript[Any],
        unit: Unit,
        token: str,
        registration: Registration,
        keys: Sequence[str],
        args: Sequence[Any],
    ) -> str | None:
        """Run an EffectScript: the stored reply, BUSY, or None (the body returned none)."""
        runnable = self._effects.get(script.lua)
        if runnable is None:
            runnable = self._effects[script.lua] = self._batcher.register(script.lua)
        result = await runnable(
            keys=[*unit.keys, *keys],
            args=[
                token,
                self.ttl,
                registration.reply.__name__,
                registration.action,
                registration.late_record or "",
                *args,
            ],
        )
        return None if result is None else str(result)


def lease_backoff(attempt: int) -> float:
    """How long to wait before asking again for a lease another handling holds, after
    `attempt` tries (from 0): 10 ms, doubling up to half a second."""
    return min(0.01 * (1 << min(attempt, 6)), 0.5)


async def wait_a_little(attempt: int) -> None:
    """Back off (lease_backoff) before asking again for a lease."""
    await asyncio.sleep(lease_backoff(attempt))
