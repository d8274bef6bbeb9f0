"""What valuestream remembers about one customer, as small dataclasses.

A customer's whole state is one value in the customer table: one read and one write per
event, and the de-duplication memory is written atomically with the change it guards.
Amounts are exact decimals in the base currency; times are aware UTC datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from pydantic import TypeAdapter

from schemas.events import OrderAmended, OrderCancelled, OrderPaid, OrderRefunded

ZERO = Decimal(0)
OrderFollowUp = OrderAmended | OrderCancelled | OrderRefunded | OrderPaid


@dataclass(slots=True)
class Order:
    placed_at: datetime
    currency: str
    fx_rate: Decimal  # base units per unit of the order's currency, fixed at placement
    revenue: Decimal
    discount: Decimal
    cost: Decimal
    lines_at: datetime  # occurred_at of the event whose lines are current (latest wins)
    payment_due_at: datetime | None = None
    refunded: Decimal = ZERO
    refund_ids: list[str] = field(default_factory=list)
    cancelled: bool = False
    amended: bool = False
    paid_at: datetime | None = None

    @property
    def margin(self) -> Decimal:
        return self.revenue - self.cost

    @property
    def refunded_margin(self) -> Decimal:
        """The margin lost with the refunds: the refunded share of the order's margin."""
        if self.revenue == 0:
            return ZERO
        return self.refunded * self.margin / self.revenue

    @property
    def paid_late(self) -> bool:
        return (
            self.paid_at is not None
            and self.payment_due_at is not None
            and self.paid_at > self.payment_due_at
        )


@dataclass(slots=True)
class Ticket:
    opened_at: datetime | None  # None while only later events of the ticket have arrived
    priority: str
    is_open: bool
    status_at: datetime  # occurred_at of the event that set is_open (latest wins)
    csat: int | None = None
    rated_at: datetime | None = None


@dataclass(slots=True)
class Emails:
    sent: set[str] = field(default_factory=set)
    click_times: list[datetime] = field(default_factory=list)  # the last 90 days of clicks
    opened: set[str] = field(default_factory=set)
    clicked: set[str] = field(default_factory=set)
    last_open_at: datetime | None = None
    last_click_at: datetime | None = None
    unsubscribed: bool = False
    bounced: bool = False


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message came from, kept so a parked event can still become a dead letter."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass(slots=True)
class Parked:
    """An order event whose order is not known yet."""

    event: OrderFollowUp
    expires_at: datetime  # processor time after which it becomes an orphan_expired dead letter
    source: Source


@dataclass(slots=True)
class PendingFollowUp:
    reason: str
    due_at: datetime
    expires_at: datetime
    subject: str  # what it is about (a ticket id, the last order's time, ...)

    @property
    def key(self) -> str:
        return f"{self.reason}|{self.subject}|{self.due_at.isoformat()}"


@dataclass(slots=True)
class CustomerState:
    customer_id: str
    first_seen_at: datetime | None = None
    updated_at: datetime | None = None
    orders: dict[str, Order] = field(default_factory=dict)
    tickets: dict[str, Ticket] = field(default_factory=dict)
    emails: Emails = field(default_factory=Emails)
    parked: list[Parked] = field(default_factory=list)
    # event_id -> processor time (epoch seconds) it was first seen, oldest first.
    seen: dict[str, float] = field(default_factory=dict)
    # Set by an erasure request: events that occurred before it are ignored.
    erased_at: datetime | None = None
    # The churn-risk level last decided (events go out when it changes) and when, with no
    # new events, it should next be checked.
    churn_level: str = "low"
    churn_check_at: datetime | None = None
    churn_assessed_at: datetime | None = None  # assessments never go back in time
    value_tier: str | None = None  # the tier at the last decision (to see it change)
    # Follow-ups: pending (one per reason), last sent per reason (cool-down), recent send
    # times (cap), and the ones already handled (key -> due), so none is made twice.
    followups: dict[str, PendingFollowUp] = field(default_factory=dict)
    followups_sent: dict[str, datetime] = field(default_factory=dict)
    followup_times: list[datetime] = field(default_factory=list)
    followups_done: dict[str, datetime] = field(default_factory=dict)

    @property
    def has_profile(self) -> bool:
        """False for an erasure marker (nothing but the id and the erasure time)."""
        return self.first_seen_at is not None


_STATE = TypeAdapter(CustomerState)


def dump_state(state: CustomerState) -> bytes:
    return _STATE.dump_json(state)


def load_state(raw: bytes) -> CustomerState:
    return _STATE.validate_json(raw)
