"""Drive the pure core by hand: start an order saga, answer its commands, read its log."""

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.messages import CommandFailed
from saga.core.decide import Decision, OutgoingCommand, ReplyReceived, decide, start_saga
from saga.core.order import ORDER_SAGA, OrderInput
from saga.core.state import SagaState

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

SUCCESS: dict[str, dict[str, Any]] = {
    "ReserveStock": {
        "items": [{"product_id": "p1", "quantity": 2, "price": "5.00"}],
        "amount": "10.00",
    },
    "ChargePayment": {"amount": "10.00"},
    "CreateOrder": {"order_id": "ord_1"},
    "ConfirmStock": {"confirmed": True},
    "ReleaseStock": {"released": True},
    "RefundPayment": {"amount": "10.00"},
    "CancelOrder": {"order_id": "ord_1"},
}
REPLY_TYPE = {
    "ReserveStock": "StockReserved",
    "ChargePayment": "PaymentCharged",
    "CreateOrder": "OrderCreated",
    "ConfirmStock": "StockConfirmed",
    "ReleaseStock": "StockReleased",
    "RefundPayment": "PaymentRefunded",
    "CancelOrder": "OrderCancelled",
}


def order_input(**changes: Any) -> OrderInput:
    base: dict[str, Any] = {
        "customer": "ann@example.com",
        "vendor": "shop@example.com",
        "delivery_address": "1 Main Street",
        "items": [{"product_id": "p1", "quantity": 2}],
        "payment_method": "Credit Card",
    }
    return OrderInput.model_validate(base | changes)


@dataclass
class Run:
    """One saga driven through the core, with a clock that ticks a second per input."""

    state: SagaState
    outbox: list[OutgoingCommand]
    decisions: list[Decision] = field(default_factory=list)
    ids: Any = field(default_factory=lambda: (f"id{n}" for n in itertools.count(100)))
    tick: int = 0

    @classmethod
    def start(cls, **changes: Any) -> "Run":
        ids = (f"id{n}" for n in itertools.count(1))
        decision = start_saga(
            ORDER_SAGA,
            saga_id="saga1",
            customer="ann@example.com",
            saga_input=order_input(**changes),
            now=T0,
            new_id=lambda: next(ids),
        )
        return cls(state=decision.state, outbox=list(decision.commands), decisions=[decision])

    @property
    def pending(self) -> OutgoingCommand:
        assert len(self.outbox) == 1, f"expected one command, have {self.outbox}"
        return self.outbox[0]

    def reply(
        self,
        reply_type: str,
        payload: dict[str, Any],
        *,
        to: OutgoingCommand | None = None,
        message_id: str | None = None,
    ) -> Decision:
        command = to or self.pending
        self.tick += 1
        decision = decide(
            ORDER_SAGA,
            self.state,
            ReplyReceived(
                message_id=message_id or f"reply-{command.envelope.message_id}",
                causation_id=command.envelope.message_id,
                type=reply_type,
                payload=payload,
            ),
            now=T0 + timedelta(seconds=self.tick),
            new_id=lambda: next(self.ids),
        )
        self.state = decision.state
        self.outbox = [c for c in self.outbox if c is not command] + list(decision.commands)
        self.decisions.append(decision)
        return decision

    def succeed(self) -> Decision:
        kind = self.pending.envelope.type
        return self.reply(REPLY_TYPE[kind], SUCCESS[kind])

    def fail(self, reason: str) -> Decision:
        return self.reply("CommandFailed", CommandFailed(reason=reason).model_dump(mode="json"))

    @property
    def events(self) -> list[str]:
        return [r.event.type for d in self.decisions for r in d.records]

    @property
    def sent(self) -> list[str]:
        return [c.envelope.type for d in self.decisions for c in d.commands]
