"""The payment service: customer balances and a ledger of charges and refunds per customer."""

import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Final, Literal

from pydantic import BaseModel
from redis.asyncio import Redis

from contracts.envelope import Envelope
from contracts.messages import Message
from contracts.money import MAX_MONEY, money
from contracts.topology import Participant
from saga.scripts import ScriptBatcher
from saga.settings import DEFAULT_RETENTION
from services.messages import ChargePayment, RefundPayment
from services.runtime import Reply
from services.scripts import cents, from_cents, idempotent, stored_reply

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

# KEYS: handled, balance, ledger, charge. ARGV: amount cents, saga id, time.
_CHARGE: Final = idempotent("""
local existing = redis.call('GET', KEYS[4])
if existing then
  local c = cjson.decode(existing)
  if c.status == 'charged' then return reply('PaymentCharged', {amount = money(c.amount_cents)}) end
  return fail('payment_refunded', 'this saga\\'s payment was already refunded')
end
local amount = tonumber(ARGV[1])
local balance = tonumber(redis.call('GET', KEYS[2]) or '0')
if balance < amount then
  return fail('insufficient_funds', 'balance ' .. money(balance) .. ', amount ' .. money(amount))
end
redis.call('DECRBY', KEYS[2], amount)
redis.call('RPUSH', KEYS[3], cjson.encode({saga_id = ARGV[2], kind = 'charge', amount_cents = amount, at = ARGV[3]}))
redis.call('SET', KEYS[4], cjson.encode({status = 'charged', amount_cents = amount}))
return reply('PaymentCharged', {amount = money(amount)})
""")

# KEYS: handled, balance, ledger, charge. ARGV: saga id, time.
_REFUND: Final = idempotent("""
local existing = redis.call('GET', KEYS[4])
if not existing then
  -- Remember the refund so a late charge for this saga is refused.
  redis.call('SET', KEYS[4], cjson.encode({status = 'refunded', amount_cents = 0}))
  return reply('PaymentRefunded', {amount = money(0)})
end
local c = cjson.decode(existing)
if c.status == 'charged' then
  redis.call('INCRBY', KEYS[2], c.amount_cents)
  redis.call('RPUSH', KEYS[3], cjson.encode({saga_id = ARGV[1], kind = 'refund', amount_cents = c.amount_cents, at = ARGV[2]}))
  c.status = 'refunded'
  redis.call('SET', KEYS[4], cjson.encode(c))
end
return reply('PaymentRefunded', {amount = money(c.amount_cents)})
""")


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
    """Balances, charges and refunds in Redis, all under one hash tag."""

    name: Participant = "payment"
    commands: Mapping[str, type[Message]] = {m.__name__: m for m in (ChargePayment, RefundPayment)}

    def __init__(
        self, redis: "Redis", namespace: str, *, retention: float = DEFAULT_RETENTION
    ) -> None:
        self._redis = redis
        self._ttl = max(1, int(retention))
        self._prefix = f"{namespace}:payment:{{payment}}"
        scripts = ScriptBatcher(redis)
        self._charge = scripts.register(_CHARGE)
        self._refund = scripts.register(_REFUND)
        self._deposit = scripts.register(_DEPOSIT)

    def _keys(self, envelope: Envelope, customer: str) -> list[str]:
        key = envelope.idempotency_key or envelope.message_id
        return [
            f"{self._prefix}:handled:{key}",
            f"{self._prefix}:balance:{customer}",
            f"{self._prefix}:ledger:{customer}",
            f"{self._prefix}:charge:{envelope.saga_id}",
        ]

    # --- operator side ---------------------------------------------------------------

    async def deposit(self, customer: str, amount: Decimal) -> Account:
        """Add money to a customer's balance; raises ValueError for an amount that is not
        one (`money`), or one that would take the balance past MAX_BALANCE."""
        customer = customer.lower()
        amount = money(amount)
        if amount == 0:
            raise ValueError("a deposit must be more than 0")
        done, balance = await self._deposit(
            keys=[f"{self._prefix}:balance:{customer}"], args=[cents(amount), cents(MAX_BALANCE)]
        )
        if not done:
            raise ValueError(
                f"a balance holds at most {MAX_BALANCE:,.2f}: {customer}'s is "
                f"{from_cents(balance):,.2f}, and {amount:,.2f} more would pass it"
            )
        ledger = await self._redis.lrange(f"{self._prefix}:ledger:{customer}", 0, -1)
        return _account(customer, balance, [str(e) for e in ledger])

    async def account(self, customer: str) -> Account | None:
        """A customer's balance and ledger; None for a customer never given a deposit nor
        charged."""
        customer = customer.lower()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(f"{self._prefix}:balance:{customer}")
            pipe.lrange(f"{self._prefix}:ledger:{customer}", 0, -1)
            balance, ledger = await pipe.execute()
        if balance is None and not ledger:
            return None
        return _account(customer, balance, ledger)

    # --- participant side ------------------------------------------------------------

    async def handle(self, envelope: Envelope, command: Message, *, now: datetime) -> Reply:
        """Do the command at most once (by its idempotency key) and return the reply."""
        at = now.isoformat()
        match command:
            case ChargePayment(customer=customer, amount=amount):
                keys = self._keys(envelope, customer.lower())
                raw = await self._charge(
                    keys=keys, args=[self._ttl, cents(amount), envelope.saga_id, at]
                )
            case RefundPayment(customer=customer):
                keys = self._keys(envelope, customer.lower())
                raw = await self._refund(keys=keys, args=[self._ttl, envelope.saga_id, at])
            case _:
                raise TypeError(f"payment cannot handle {type(command).__name__}")
        return stored_reply(raw)


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
