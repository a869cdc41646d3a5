"""The order service: vendors and orders, one order per saga."""

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel
from redis.asyncio import Redis

from contracts.envelope import Envelope
from contracts.messages import Message
from contracts.money import Money
from contracts.topology import Participant
from saga.scripts import ScriptBatcher
from saga.settings import DEFAULT_RETENTION
from services.messages import CancelOrder, CreateOrder, PaymentMethod, PricedItem
from services.runtime import Reply
from services.scripts import idempotent, stored_reply

_ORDER_IDS: Final = uuid.UUID("0b9f8a55-3c2e-4f0e-9a7d-2f6f3e1c8b41")

# KEYS: handled, order, void marker, vendors, order index. ARGV: order json, vendor, id, score.
_CREATE: Final = idempotent("""
local existing = redis.call('GET', KEYS[2])
if existing then
  local o = cjson.decode(existing)
  if o.status == 'created' then return reply('OrderCreated', {order_id = o.order_id}) end
  return fail('order_cancelled', 'this saga\\'s order was cancelled')
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  return fail('order_cancelled', 'this saga\\'s order was cancelled before it was created')
end
if redis.call('SISMEMBER', KEYS[4], ARGV[2]) == 0 then
  return fail('unknown_vendor', 'no vendor ' .. ARGV[2])
end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[3])
return reply('OrderCreated', {order_id = ARGV[3]})
""")

# KEYS: handled, order, void marker. ARGV: order id.
_CANCEL: Final = idempotent("""
local existing = redis.call('GET', KEYS[2])
if not existing then
  -- Remember the cancel so a late create for this saga is refused.
  redis.call('SET', KEYS[3], '1')
  return reply('OrderCancelled', {order_id = cjson.null})
end
local o = cjson.decode(existing)
o.status = 'cancelled'
redis.call('SET', KEYS[2], cjson.encode(o))
return reply('OrderCancelled', {order_id = o.order_id})
""")


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


class OrderService:
    """Vendors and orders in Redis, all under one hash tag."""

    name: Participant = "order"
    commands: Mapping[str, type[Message]] = {m.__name__: m for m in (CreateOrder, CancelOrder)}

    def __init__(
        self, redis: "Redis", namespace: str, *, retention: float = DEFAULT_RETENTION
    ) -> None:
        self._redis = redis
        self._ttl = max(1, int(retention))
        self._prefix = f"{namespace}:order:{{order}}"
        scripts = ScriptBatcher(redis)
        self._create = scripts.register(_CREATE)
        self._cancel = scripts.register(_CANCEL)

    @property
    def _vendors_key(self) -> str:
        return f"{self._prefix}:vendors"

    @property
    def _index_key(self) -> str:
        return f"{self._prefix}:orders"

    def _order_key(self, order_id: str) -> str:
        return f"{self._prefix}:order:{order_id}"

    # --- operator side ---------------------------------------------------------------

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

    # --- participant side ------------------------------------------------------------

    async def handle(self, envelope: Envelope, command: Message, *, now: datetime) -> Reply:
        """Do the command at most once (by its idempotency key) and return the reply."""
        order_id = order_id_for(envelope.saga_id)
        base = [
            f"{self._prefix}:handled:{envelope.idempotency_key or envelope.message_id}",
            self._order_key(order_id),
            f"{self._prefix}:void:{order_id}",
        ]
        match command:
            case CreateOrder():
                order = Order(
                    order_id=order_id,
                    saga_id=envelope.saga_id,
                    customer=command.customer.lower(),
                    vendor=command.vendor.lower(),
                    items=command.items,
                    amount=command.amount,
                    delivery_address=command.delivery_address,
                    description=command.description,
                    payment_method=command.payment_method,
                    status="created",
                    created_at=now,
                )
                raw = await self._create(
                    keys=[*base, self._vendors_key, self._index_key],
                    args=[
                        self._ttl,
                        order.model_dump_json(),
                        order.vendor,
                        order_id,
                        now.timestamp(),
                    ],
                )
            case CancelOrder():
                raw = await self._cancel(keys=base, args=[self._ttl, order_id])
            case _:
                raise TypeError(f"order cannot handle {type(command).__name__}")
        return stored_reply(raw)
