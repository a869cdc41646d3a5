"""The order participant: vendors and orders, one order per saga."""

import uuid
from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel

from contracts.money import Money
from saga.connections import AnyRedis
from saga.participant import Context, EffectScript, Participant, Refused
from services.messages import (
    CancelOrder,
    CreateOrder,
    OrderCancelled,
    OrderCreated,
    PaymentMethod,
    PricedItem,
)

order = Participant("order")

_ORDER_IDS: Final = uuid.UUID("0b9f8a55-3c2e-4f0e-9a7d-2f6f3e1c8b41")

# KEYS: order, void marker, vendors, order index. ARGV: order json, vendor, id, score.
_CREATE: Final = EffectScript(
    """
-- The order and the void marker in one read (the keys share the hash tag).
local read = redis.call('MGET', KEYS[1], KEYS[2])
local existing = read[1]
if existing then
  local o = cjson.decode(existing)
  if o.status == 'created' then return ok({order_id = o.order_id}) end
  return refuse('order_cancelled', 'this saga\\'s order was cancelled')
end
if read[2] then
  return refuse('order_cancelled', 'this saga\\'s order was cancelled before it was created')
end
if redis.call('SISMEMBER', KEYS[3], ARGV[2]) == 0 then
  return refuse('unknown_vendor', 'no vendor ' .. ARGV[2])
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
return ok({order_id = ARGV[3]})
""",
    reply=OrderCreated,
)

# KEYS: order, void marker.
_CANCEL: Final = EffectScript(
    """
local existing = redis.call('GET', KEYS[1])
if not existing then
  -- Remember the cancel so a late create for this saga is refused (for the retention,
  -- as the SDK's own marker).
  redis.call('SET', KEYS[2], '1', 'EX', ttl)
  return ok({order_id = cjson.null})
end
local o = cjson.decode(existing)
o.status = 'cancelled'
redis.call('SET', KEYS[1], cjson.encode(o))
return ok({order_id = o.order_id})
""",
    reply=OrderCancelled,
)


class Order(BaseModel):
    order_id: str
    saga_id: str
    customer: str
    vendor: str
    items: list[PricedItem]
    amount: Money
    delivery_address: str
    description: str | None
    payment_method: PaymentMethod
    status: Literal["created", "cancelled"]
    created_at: datetime


def order_id_for(saga_id: str) -> str:
    """A saga has at most one order, and its id follows from the saga's."""
    return "ord_" + uuid.uuid5(_ORDER_IDS, saga_id).hex[:20]


def _keys(ctx: Context) -> list[str]:
    """The saga's order and its void marker (a cancel that came before the create)."""
    order_id = order_id_for(ctx.saga_id)
    return [ctx.key("order", order_id), ctx.key("void", order_id)]


@order.command(
    CreateOrder,
    reply=OrderCreated,
    atomic=True,
    after_compensation=Refused(
        "order_cancelled", "this saga's order was cancelled before it was created"
    ),
)
async def create(command: CreateOrder, ctx: Context) -> OrderCreated:
    """Record the saga's order, for a vendor the shop knows."""
    created = Order(
        order_id=order_id_for(ctx.saga_id),
        saga_id=ctx.saga_id,
        customer=command.customer.lower(),
        vendor=command.vendor.lower(),
        items=command.items,
        amount=command.amount,
        delivery_address=command.delivery_address,
        description=command.description,
        payment_method=command.payment_method,
        status="created",
        created_at=ctx.now,
    )
    return await ctx.atomically(
        _CREATE,
        keys=[*_keys(ctx), ctx.key("vendors"), ctx.key("orders")],
        args=[created.model_dump_json(), created.vendor, created.order_id, ctx.now.timestamp()],
    )


@create.compensation(CancelOrder, reply=OrderCancelled, atomic=True)
async def cancel(command: CancelOrder, ctx: Context) -> OrderCancelled:
    """Mark the saga's order cancelled (if it was created)."""
    return await ctx.atomically(_CANCEL, keys=_keys(ctx))


class OrderService:
    """Orders as the operator sees them (`saga order ...`, `saga vendor ...`): vendors
    and orders, under the participant's hash tag."""

    def __init__(self, redis: AnyRedis, namespace: str) -> None:
        self._redis = redis
        self._namespace = namespace

    @property
    def _vendors_key(self) -> str:
        return order.key(self._namespace, "vendors")

    @property
    def _index_key(self) -> str:
        return order.key(self._namespace, "orders")

    def _order_key(self, order_id: str) -> str:
        return order.key(self._namespace, "order", order_id)

    async def add_vendor(self, email: str) -> None:
        """Register a vendor that may receive orders."""
        await self._redis.sadd(self._vendors_key, email.lower())

    def presence_keys(self) -> list[str]:
        """Keys of which one exists once this store holds a vendor or an order."""
        return [self._vendors_key, self._index_key]

    async def vendors(self) -> list[str]:
        """Registered vendors, sorted."""
        return sorted(str(v) for v in await self._redis.smembers(self._vendors_key))

    async def order(self, order_id: str) -> Order | None:
        """One order, or None."""
        raw = await self._redis.get(self._order_key(order_id))
        return None if raw is None else Order.model_validate_json(raw)

    async def orders(self, *, limit: int = 100) -> list[Order]:
        """Orders, newest first."""
        ids = await self._redis.zrevrange(self._index_key, 0, limit - 1)
        found = [await self.order(str(i)) for i in ids]
        return [o for o in found if o is not None]
