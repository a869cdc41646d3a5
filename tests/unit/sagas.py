"""Drive the pure core by hand: start an order saga, answer its commands, read its log."""

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.messages import CommandFailed
from saga.core.decide import (
    Decision,
    OutgoingCommand,
    ReplyReceived,
    SagaInput,
    Timer,
    TimerFired,
    decide,
    start_saga,
)
from saga.core.state import SagaState
from services.orders import OrderInput
from tests.shop_saga import ORDER_SAGA

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
    decisions: list[Decision] = field(default_factory=list)
    ids: Any = field(default_factory=lambda: (f"id{n}" for n in itertools.count(100)))
    tick: int = 0
    rand: float = 0.5

    @classmethod
    def start(cls, **changes: Any) -> "Run":
        ids = (f"id{n}" for n in itertools.count(1))
        decision = start_saga(
            ORDER_SAGA,
            saga_id="saga1",
            customer="ann@example.com",
            saga_input=order_input(**changes).model_dump(mode="json"),
            now=T0,
            new_id=lambda: next(ids),
        )
        return cls(state=decision.state, decisions=[decision])

    @property
    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.tick)

    @property
    def outbox(self) -> list[OutgoingCommand]:
        """Commands sent whose reply the saga still awaits."""
        return [
            c
            for d in self.decisions
            for c in d.commands
            if c.envelope.message_id in self.state.pending
        ]

    @property
    def pending(self) -> OutgoingCommand:
        assert len(self.outbox) == 1, f"expected one command, have {self.outbox}"
        return self.outbox[0]

    @property
    def timers(self) -> list[Timer]:
        """Every timer the saga asked for, in order."""
        return [t for d in self.decisions for t in d.timers]

    def apply(self, saga_input: SagaInput, *, after: float = 1) -> Decision:
        self.tick += int(after)
        decision = decide(
            ORDER_SAGA,
            self.state,
            saga_input,
            now=self.now,
            new_id=lambda: next(self.ids),
            rng=lambda: self.rand,
        )
        self.state = decision.state
        self.decisions.append(decision)
        return decision

    def reply(
        self,
        reply_type: str,
        payload: dict[str, Any],
        *,
        to: OutgoingCommand | None = None,
        message_id: str | None = None,
    ) -> Decision:
        command = to or self.pending
        return self.apply(
            ReplyReceived(
                message_id=message_id or f"reply-{command.envelope.message_id}",
                causation_id=command.envelope.message_id,
                type=reply_type,
                payload=payload,
            )
        )

    def succeed(self) -> Decision:
        kind = self.pending.envelope.type
        return self.reply(REPLY_TYPE[kind], SUCCESS[kind])

    def fail(self, reason: str, *, transient: bool = False) -> Decision:
        failure = CommandFailed(reason=reason, transient=transient)
        return self.reply("CommandFailed", failure.model_dump(mode="json"))

    def time_out(self) -> Decision:
        """The pending command's timeout fires."""
        command_id = self.pending.envelope.message_id
        (timer,) = [t for t in self.timers if t.command_id == command_id]
        return self.apply(TimerFired(timer), after=30)

    def retry_due(self) -> Decision:
        """The latest scheduled retry fires."""
        timer = [t for t in self.timers if t.kind == "retry"][-1]
        return self.apply(TimerFired(timer), after=60)

    @property
    def events(self) -> list[str]:
        return [r.event.type for d in self.decisions for r in d.records]

    def of_type(self, kind: str) -> list[Any]:
        return [r.event for d in self.decisions for r in d.records if r.event.type == kind]

    @property
    def sent(self) -> list[str]:
        return [c.envelope.type for d in self.decisions for c in d.commands]
