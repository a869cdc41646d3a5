"""The sagas list's filters: what the query asks for, checked, and how the store reads it."""

from dataclasses import dataclass
from typing import get_args
from urllib.parse import urlencode

from saga.console.guard import ConsoleProblem
from saga.console.sessions import Session
from saga.core.state import SagaState, SagaStatus
from saga.keyspace import ACTIVE, ALL, Index, customer_index
from saga.store import Position

STATUSES = get_args(SagaStatus)
PAGE_SIZE = 50
_ACTIVE = ("running", "compensating")


@dataclass(frozen=True)
class ListFilter:
    """Which sagas a list shows: by status, type and customer (a customer: only theirs)."""

    status: str | None = None
    saga_type: str | None = None
    customer: str | None = None
    failed_step: str | None = None  # the step whose failure ended the saga

    @classmethod
    def of(
        cls,
        session: Session,
        *,
        status: str | None,
        saga_type: str | None,
        customer: str | None,
        failed_step: str | None = None,
    ) -> "ListFilter":
        """The filter a query asks for; a customer's is always their own sagas."""
        if status and status not in STATUSES:
            raise ConsoleProblem(400, f"no status {status!r}: one of {', '.join(STATUSES)}")
        if any(len(v or "") > 200 for v in (saga_type, customer, failed_step)):
            raise ConsoleProblem(400, "a filter is at most 200 characters")
        own = _given(customer)
        if not session.caller.is_admin:
            own = session.email
        return cls(
            status or None, _given(saga_type, lower=False), own, _given(failed_step, lower=False)
        )

    def keep(self, state: SagaState) -> bool:
        """Whether a saga passes the filter."""
        return (
            self.status in (None, state.status)
            and self.saga_type in (None, state.saga_type)
            and self.customer in (None, state.customer.lower())
            and self.failed_step in (None, state.failed_step)
        )

    def index(self) -> Index:
        """The store's smallest index that holds every saga the filter passes."""
        if self.customer is not None:
            return customer_index(self.customer)
        return ACTIVE if self.status in _ACTIVE else ALL

    def query(self, *, before: Position | None = None) -> str:
        """The filter (and a cursor) as a URL query."""
        fields = {
            "status": self.status,
            "type": self.saga_type,
            "customer": self.customer,
            "failed_step": self.failed_step,
        }
        if before is not None:
            fields["before"] = before.text()
        return urlencode({k: v for k, v in fields.items() if v})


def _given(value: str | None, *, lower: bool = True) -> str | None:
    """A filter's value as asked, None if it was left empty."""
    value = (value or "").strip()
    return (value.lower() if lower else value) or None


def cursor(text: str | None) -> Position | None:
    """The position a `before` or `top` cursor names; 400 for one that names none."""
    if not text:
        return None
    try:
        return Position.parse(text)
    except ValueError:
        raise ConsoleProblem(400, "the list's cursor is not one the console made") from None
