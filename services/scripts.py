"""Lua for participants: every effect and the reply it gives are stored in one script."""

import json
from decimal import Decimal
from typing import Final

from services.runtime import Reply

# KEYS[1] is always the command's "handled" key. A command seen before returns the
# reply it got then, and has no second effect. `reply` stores and returns a reply, kept
# for `ttl` seconds (the retention, ARGV[1], taken off so each body's ARGV starts at 1);
# amounts are integer cents inside Redis and decimal strings ("12.50") on the wire.
_PRELUDE: Final = """
local ttl = table.remove(ARGV, 1)
local done = redis.call('GET', KEYS[1])
if done then return done end
local function reply(kind, payload)
  local encoded = cjson.encode({type = kind, payload = payload})
  redis.call('SET', KEYS[1], encoded, 'EX', ttl)
  return encoded
end
local function money(cents)
  return string.format('%d.%02d', math.floor(cents / 100), cents % 100)
end
local function fail(reason, detail)
  return reply('CommandFailed', {reason = reason, detail = detail})
end
"""


def idempotent(body: str) -> str:
    """A participant script whose body runs at most once per handled key; call it with
    the retention in seconds before the body's own arguments."""
    return _PRELUDE + body


def cents(amount: Decimal) -> int:
    """A two-place Decimal amount as integer cents (Lua numbers are doubles: no fractions)."""
    return int(amount * 100)


def from_cents(value: int | str) -> Decimal:
    """Integer cents (as Redis keeps them) as a two-place Decimal."""
    return (Decimal(int(value)) / 100).quantize(Decimal("0.01"))


def stored_reply(raw: str) -> Reply:
    """The (type, payload) a participant script returned."""
    data = json.loads(raw)
    return data["type"], data["payload"]
