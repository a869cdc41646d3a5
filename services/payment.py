"""The payment participant: customer balances and a ledger of charges and refunds per customer."""

import json
from datetime import datetime
from decimal import Decimal
from typing import Final, Literal

from pydantic import BaseModel

from contracts.money import MAX_MONEY, money
from saga.connections import AnyRedis
from saga.participant import Context, EffectScript, Participant, Refused
from saga.scripts import ScriptBatcher
from services.cents import LUA_MONEY, cents, from_cents
from services.messages import ChargePayment, PaymentCharged, PaymentRefunded, RefundPayment

payment = Participant("payment")

# The most a balance may hold: a hundred deposits of the largest amount, in cents far
# below 2^53, so that Lua's doubles count every cent of it exactly.
MAX_BALANCE: Final = MAX_MONEY * 100

# KEYS: balance. ARGV: amount cents, the most the balance may hold in cents.
# Returns {1, new balance}, or {0, balance} when the deposit would pass the bound.
_DEPOSIT: Final = """
local balance = tonumber(redis.call('GET', KEYS[1]) or '0')
if balance + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return {0, balance} end
return {1, redis.call('INCRBY', KEYS[1], ARGV[1])}
"""

# KEYS: balance, ledger, charge. ARGV: amount cents, saga id, time.
_CHARGE: Final = EffectScript(
    LUA_MONEY
    + """
-- The charge record and the balance in one read (the keys share the hash tag).
local read = redis.call('MGET', KEYS[3], KEYS[1])
local existing = read[1]
if existing then
  local c = cjson.decode(existing)
  if c.status == 'charged' then return ok({amount = money(c.amount_cents)}) end
  return refuse('payment_refunded', 'this saga\\'s payment was already refunded')
end
local amount = tonumber(ARGV[1])
local balance = tonumber(read[2] or '0')
if balance < amount then
  return refuse('insufficient_funds', 'balance ' .. money(balance) .. ', amount ' .. money(amount))
end
redis.call('DECRBY', KEYS[1], amount)
redis.call('RPUSH', KEYS[2], cjson.encode({saga_id = ARGV[2], kind = 'charge', amount_cents = amount, at = ARGV[3]}))
redis.call('SET', KEYS[3], cjson.encode({status = 'charged', amount_cents = amount}))
return ok({amount = money(amount)})
""",
    reply=PaymentCharged,
)

# KEYS: balance, ledger, charge. ARGV: saga id, time.
_REFUND: Final = EffectScript(
    LUA_MONEY
    + """
local existing = redis.call('GET', KEYS[3])
if not existing then
  -- Remember the refund so a late charge for this saga is refused (for the retention,
  -- as the SDK's own marker: a charge record that was never a charge is not kept).
  redis.call('SET', KEYS[3], cjson.encode({status = 'refunded', amount_cents = 0}), 'EX', ttl)
  return ok({amount = money(0)})
end
local c = cjson.decode(existing)
if c.status == 'charged' then
  redis.call('INCRBY', KEYS[1], c.amount_cents)
  redis.call('RPUSH', KEYS[2], cjson.encode({saga_id = ARGV[1], kind = 'refund', amount_cents = c.amount_cents, at = ARGV[2]}))
  c.status = 'refunded'
  redis.call('SET', KEYS[3], cjson.encode(c))
end
return ok({amount = money(c.amount_cents)})
""",
    reply=PaymentRefunded,
)


def _keys(ctx: Context, customer: str) -> list[str]:
    """The customer's balance and ledger, and the saga's charge."""
    customer = customer.lower()
    return [
        ctx.key("balance", customer),
        ctx.key("ledger", customer),
        ctx.key("charge", ctx.saga_id),
    ]


@payment.command(
    ChargePayment,
    reply=PaymentCharged,
    atomic=True,
    after_compensation=Refused("payment_refunded", "this saga's payment was already refunded"),
)
async def charge(command: ChargePayment, ctx: Context) -> PaymentCharged:
    """Take the amount from the customer's balance, if it holds that much."""
    args = [cents(command.amount), ctx.saga_id, ctx.now.isoformat()]
    return await ctx.atomically(_CHARGE, keys=_keys(ctx, command.customer), args=args)


@charge.compensation(RefundPayment, reply=PaymentRefunded, atomic=True)
async def refund(command: RefundPayment, ctx: Context) -> PaymentRefunded:
    """Give the saga's charge back (if it made one)."""
    args = [ctx.saga_id, ctx.now.isoformat()]
    return await ctx.atomically(_REFUND, keys=_keys(ctx, command.customer), args=args)


class LedgerEntry(BaseModel):
    saga_id: str
    kind: Literal["charge", "refund"]
    amount: Decimal
    at: datetime


class Account(BaseModel):
    customer: str
    balance: Decimal
    ledger: list[LedgerEntry]


class PaymentService:
    """Payments as the operator sees them (`saga payment ...`): deposits, balances and
    ledgers, under the participant's hash tag."""

    def __init__(self, redis: AnyRedis, namespace: str) -> None:
        self._redis = redis
        self._namespace = namespace
        self._deposit = ScriptBatcher(redis).register(_DEPOSIT)

    async def deposit(self, customer: str, amount: Decimal) -> Account:
        """Add money to a customer's balance; raises ValueError for an amount that is not
        one (`money`), or one that would take the balance past MAX_BALANCE."""
        customer = customer.lower()
        amount = money(amount)
        if amount == 0:
            raise ValueError("a deposit must be more than 0")
        done, balance = await self._deposit(
            keys=[payment.key(self._namespace, "balance", customer)],
            args=[cents(amount), cents(MAX_BALANCE)],
        )
        if not done:
            raise ValueError(
                f"a balance holds at most {MAX_BALANCE:,.2f}: {customer}'s is "
                f"{from_cents(balance):,.2f}, and {amount:,.2f} more would pass it"
            )
        ledger = await self._redis.lrange(payment.key(self._namespace, "ledger", customer), 0, -1)
        return _account(customer, balance, [str(e) for e in ledger])

    async def account(self, customer: str) -> Account | None:
        """A customer's balance and ledger; None for a customer never given a deposit nor
        charged."""
        customer = customer.lower()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(payment.key(self._namespace, "balance", customer))
            pipe.lrange(payment.key(self._namespace, "ledger", customer), 0, -1)
            balance, ledger = await pipe.execute()
        if balance is None and not ledger:
            return None
        return _account(customer, balance, ledger)


def _account(customer: str, balance: int | str | None, ledger: list[str]) -> Account:
    entries = [json.loads(e) for e in ledger]
    return Account(
        customer=customer,
        balance=from_cents(balance or 0),
        ledger=[
            LedgerEntry(
                saga_id=e["saga_id"],
                kind=e["kind"],
                amount=from_cents(e["amount_cents"]),
                at=datetime.fromisoformat(e["at"]),
            )
            for e in entries
        ],
    )
