"""Money as the shop's scripts keep it: integer cents in Redis, decimal strings on the wire."""

from decimal import Decimal
from typing import Final

# A Lua function for a script's body: integer cents as the wire's decimal string ("12.50").
LUA_MONEY: Final = """
local function money(cents)
  return string.format('%d.%02d', math.floor(cents / 100), cents % 100)
end
"""


def cents(amount: Decimal) -> int:
    """A two-place Decimal amount as integer cents (Lua numbers are doubles: no fractions)."""
    return int(amount * 100)


def from_cents(value: int | str) -> Decimal:
    """Integer cents (as Redis keeps them) as a two-place Decimal."""
    return (Decimal(int(value)) / 100).quantize(Decimal("0.01"))
