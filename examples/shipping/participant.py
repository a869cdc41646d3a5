"""A shipping participant on the SDK, the carrier: it books a shipment for an order, and
cancels it.

    saga participant run examples.shipping.participant:carrier

(Named carrier, not shipping: the order-fulfilment example reaches a participant named
shipping over HTTP, and a namespace reaches each participant one way.)

`ShipOrder` shows a handler whose effect is a plain call (here a Redis write; it could
be an HTTP call to a courier): the SDK runs it once per idempotency key, holding the
step's lease. `CancelShipment` shows an atomic handler: its effect and its reply are
written by one Lua script. See docs/participants.md.
"""

import hashlib

from pydantic import BaseModel, ConfigDict, Field

from saga.participant import Compensated, Context, EffectScript, Participant, Refused

carrier = Participant("carrier")


class ShipOrder(BaseModel):
    """Book a courier for an order."""

    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(min_length=1, max_length=64)
    address: str = Field(min_length=1, max_length=500)


class Shipped(BaseModel):
    tracking: str


class CancelShipment(BaseModel):
    """Compensation of ShipOrder: cancel the saga's shipment, if it was booked."""

    model_config = ConfigDict(extra="forbid")


@carrier.command(ShipOrder, reply=Shipped)
async def ship(command: ShipOrder, ctx: Context) -> Shipped:
    """Book the shipment; no courier goes `nowhere`."""
    if command.address == "nowhere":
        raise Refused("undeliverable", "no courier goes there")
    # The same tracking number for every try of this step: a courier would be given
    # ctx.idempotency_key, and would book once for it.
    tracking = "TRK-" + hashlib.sha256(ctx.idempotency_key.encode()).hexdigest()[:10].upper()
    await ctx.redis.hset(
        ctx.key("shipment", ctx.saga_id),
        mapping={"order": command.order_id, "address": command.address, "tracking": tracking},
    )
    ctx.log.info("shipment booked", tracking=tracking)
    return Shipped(tracking=tracking)


# KEYS[1]: the saga's shipment. A shipment never booked has nothing to cancel: the SDK
# remembers the cancel, and a ShipOrder for this step that comes after is refused.
_CANCEL = EffectScript(
    """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'cancelled', '1')
end
return ok()
""",
    reply=Compensated,
)


@ship.compensation(CancelShipment, atomic=True)
async def cancel(command: CancelShipment, ctx: Context) -> None:
    """Cancel the saga's shipment (its reply is Compensated)."""
    await ctx.atomically(_CANCEL, keys=[ctx.key("shipment", ctx.saga_id)])
