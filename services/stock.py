"""The stock participant: products {available, reserved, price} and per-saga reservations."""

import json
from decimal import Decimal
from typing import Final

from pydantic import BaseModel

from contracts.money import MAX_MONEY, money
from saga.connections import AnyRedis
from saga.participant import Context, EffectScript, Participant, Refused
from services.cents import LUA_MONEY, cents, from_cents
from services.messages import (
    ConfirmStock,
    ReleaseStock,
    ReserveStock,
    StockConfirmed,
    StockReleased,
    StockReserved,
)

stock = Participant("stock")

# The most a product's available level may be set to: far above any stock, and a level
# Redis's integers count with and Lua's doubles hold exactly (below 2^53), with room
# for what is reserved and sold on top.
MAX_STOCK: Final = 1_000_000_000_000

# A script that fails half-way keeps what it wrote: a product whose levels cannot be
# counted with (past 15 digits: set by hand, or before `saga stock set` bounded them)
# is refused as an error before anything is written. An error, not a stored refusal:
# once the level is set again, the same command goes through.
# `levels_uncountable` judges levels read already (available, reserved, sold).
_COUNTABLE: Final = """
local function levels_uncountable(levels, product)
  for i, name in ipairs({'available', 'reserved', 'sold'}) do
    local level = levels[i]
    if level and not (string.match(level, '^%d+$') and #level <= 15) then
      return redis.error_reply(product .. ': ' .. name .. ' is ' .. string.sub(level, 1, 40) ..
        ', not a whole number of at most 15 digits (set the product again)')
    end
  end
end
-- A whole number of at most 15 digits as Redis keeps it (Lua's tostring would write
-- 1e+14 for some).
local function level(n)
  return string.format('%.0f', n)
end
"""

# KEYS: reservation, one product key per distinct product.
# ARGV[1]: {products, totals, items: [{product_id, quantity, unit_price_cents, k}], max_cents}
_RESERVE: Final = EffectScript(
    LUA_MONEY
    + _COUNTABLE
    + """
local existing = redis.call('GET', KEYS[1])
if existing then
  local r = cjson.decode(existing)
  if r.status == 'reserved' then return ok(r.reply) end
  return refuse('reservation_' .. r.status, 'this saga\\'s reservation was already ' .. r.status)
end
local req = cjson.decode(ARGV[1])
local prices, available, reserved = {}, {}, {}
for k = 1, #req.products do
  local p = redis.call('HMGET', KEYS[1 + k], 'available', 'price_cents', 'reserved', 'sold')
  if not p[1] then return refuse('unknown_product', 'no product ' .. req.products[k]) end
  local bad = levels_uncountable({p[1], p[3], p[4]}, req.products[k])
  if bad then return bad end
  available[k], prices[k], reserved[k] = tonumber(p[1]), tonumber(p[2]), tonumber(p[3] or '0')
end
local items, total = {}, 0
for i, item in ipairs(req.items) do
  local price = prices[item.k]
  if item.unit_price_cents >= 0 and item.unit_price_cents ~= price then
    return refuse('price_mismatch', item.product_id .. ' costs ' .. money(price) .. ', not ' .. money(item.unit_price_cents))
  end
  total = total + price * item.quantity
  items[i] = {product_id = item.product_id, quantity = item.quantity, price = money(price)}
end
for k = 1, #req.products do
  if available[k] < req.totals[k] then
    return refuse('insufficient_stock', req.products[k] .. ': ' .. available[k] .. ' available, ' .. req.totals[k] .. ' asked')
  end
end
if total > req.max_cents then return refuse('amount_too_large', 'the order exceeds ' .. money(req.max_cents)) end
-- Both levels in one HSET, from the values read above (the script runs alone).
for k = 1, #req.products do
  redis.call('HSET', KEYS[1 + k], 'available', level(available[k] - req.totals[k]),
    'reserved', level(reserved[k] + req.totals[k]))
end
local result = {items = items, amount = money(total)}
redis.call('SET', KEYS[1], cjson.encode({status = 'reserved', products = req.products, totals = req.totals, reply = result}))
return ok(result)
""",
    reply=StockReserved,
)

# Release (compensation) and confirm (the sale) of the saga's reservation: one body,
# which answers the reply of the handler that runs it.
# KEYS: reservation, one key per product the command names.
# ARGV: "release" or "confirm", then the product ids of those keys, in order.
_SETTLE: Final = (
    _COUNTABLE
    + """
local existing = redis.call('GET', KEYS[1])
local releasing = ARGV[1] == 'release'
if not existing then
  if releasing then
    -- Remember the release so a late reservation for this saga is refused.
    redis.call('SET', KEYS[1], cjson.encode({status = 'released'}), 'EX', ttl)
    return ok({released = false})
  end
  return refuse('no_reservation', 'this saga holds no reservation')
end
local r = cjson.decode(existing)
if r.status == 'reserved' then
  local key_of, levels = {}, {}
  for i = 2, #ARGV do key_of[ARGV[i]] = KEYS[i] end
  for k = 1, #r.products do
    if not key_of[r.products[k]] then
      return refuse('protocol_error', 'the reservation holds ' .. r.products[k] .. ', not named in the command')
    end
    levels[k] = redis.call('HMGET', key_of[r.products[k]], 'available', 'reserved', 'sold')
    local bad = levels_uncountable(levels[k], r.products[k])
    if bad then return bad end
  end
  -- Both levels in one HSET, from the values read above (the script runs alone).
  local into = releasing and 'available' or 'sold'
  local at = releasing and 1 or 3
  for k = 1, #r.products do
    redis.call('HSET', key_of[r.products[k]],
      'reserved', level(tonumber(levels[k][2] or '0') - r.totals[k]),
      into, level(tonumber(levels[k][at] or '0') + r.totals[k]))
  end
  r.status = releasing and 'released' or 'confirmed'
  redis.call('SET', KEYS[1], cjson.encode(r), 'EX', ttl)
  if releasing then return ok({released = true}) end
  return ok({confirmed = true})
end
if releasing and r.status == 'released' then return ok({released = false}) end
if not releasing and r.status == 'confirmed' then return ok({confirmed = true}) end
return refuse('reservation_' .. r.status, 'this saga\\'s reservation was already ' .. r.status)
"""
)
_RELEASE: Final = EffectScript(_SETTLE, reply=StockReleased)
_CONFIRM: Final = EffectScript(_SETTLE, reply=StockConfirmed)


@stock.command(
    ReserveStock,
    reply=StockReserved,
    atomic=True,
    after_compensation=Refused(
        "reservation_released", "this saga's reservation was already released"
    ),
)
async def reserve(command: ReserveStock, ctx: Context) -> StockReserved:
    """Hold the items for the saga at the shop's prices: all of them, or none."""
    products = list(dict.fromkeys(i.product_id for i in command.items))
    totals = dict.fromkeys(products, 0)
    for item in command.items:
        totals[item.product_id] += item.quantity
    request = {
        "products": products,
        "totals": [totals[p] for p in products],
        "items": [
            {
                "product_id": i.product_id,
                "quantity": i.quantity,
                "unit_price_cents": -1 if i.unit_price is None else cents(i.unit_price),
                "k": products.index(i.product_id) + 1,
            }
            for i in command.items
        ],
        "max_cents": cents(MAX_MONEY),
    }
    keys = [ctx.key("reservation", ctx.saga_id), *(ctx.key("product", p) for p in products)]
    return await ctx.atomically(_RESERVE, keys=keys, args=[json.dumps(request)])


@reserve.compensation(ReleaseStock, reply=StockReleased, atomic=True)
async def release(command: ReleaseStock, ctx: Context) -> StockReleased:
    """Give the saga's reservation back to the shelves (if it holds one)."""
    keys = [
        ctx.key("reservation", ctx.saga_id),
        *(ctx.key("product", p) for p in command.product_ids),
    ]
    return await ctx.atomically(_RELEASE, keys=keys, args=["release", *command.product_ids])


@stock.command(ConfirmStock, reply=StockConfirmed, atomic=True)
async def confirm(command: ConfirmStock, ctx: Context) -> StockConfirmed:
    """Turn the saga's reservation into a sale."""
    keys = [
        ctx.key("reservation", ctx.saga_id),
        *(ctx.key("product", p) for p in command.product_ids),
    ]
    return await ctx.atomically(_CONFIRM, keys=keys, args=["confirm", *command.product_ids])


def check_stock_level(quantity: int) -> int:
    """A level a product may be set to, or ValueError saying what it may be."""
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise ValueError(f"a quantity is a whole number, not {quantity!r}")
    if quantity < 0:
        raise ValueError(f"a quantity is at least 0, not {quantity:,}")
    if quantity > MAX_STOCK:
        raise ValueError(f"a quantity is at most {MAX_STOCK:,}, not {quantity:,}")
    return quantity


class Product(BaseModel):
    product_id: str
    available: int
    reserved: int
    sold: int
    price: Decimal


class StockService:
    """The stock as the operator sees it (`saga stock ...`): products' levels and prices,
    under the participant's hash tag."""

    def __init__(self, redis: AnyRedis, namespace: str) -> None:
        self._redis = redis
        self._namespace = namespace

    def _product_key(self, product_id: str) -> str:
        return stock.key(self._namespace, "product", product_id)

    @property
    def _catalogue_key(self) -> str:
        return stock.key(self._namespace, "products")

    async def set_product(self, product_id: str, *, quantity: int, price: Decimal) -> Product:
        """Set a product's available quantity and price (reservations are kept); raises
        ValueError for a quantity or price out of bounds."""
        check_stock_level(quantity)
        price = money(price)
        if price == 0:
            raise ValueError("a price must be more than 0")
        key = self._product_key(product_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"available": quantity, "price_cents": cents(price)})
            pipe.hsetnx(key, "reserved", 0)
            pipe.hsetnx(key, "sold", 0)
            pipe.sadd(self._catalogue_key, product_id)
            await pipe.execute()
        product = await self.product(product_id)
        assert product is not None
        return product

    async def product(self, product_id: str) -> Product | None:
        """One product's levels and price, or None."""
        raw = await self._redis.hgetall(self._product_key(product_id))
        if not raw:
            return None
        return Product(
            product_id=product_id,
            available=int(raw["available"]),
            reserved=int(raw.get("reserved", 0)),
            sold=int(raw.get("sold", 0)),
            price=from_cents(str(raw["price_cents"])),
        )

    def presence_keys(self) -> list[str]:
        """Keys of which one exists once this store holds anything an operator set up."""
        return [self._catalogue_key]

    async def products(self) -> list[Product]:
        """Every product, by id."""
        ids = sorted(str(i) for i in await self._redis.smembers(self._catalogue_key))
        found = [await self.product(pid) for pid in ids]
        return [p for p in found if p is not None]
