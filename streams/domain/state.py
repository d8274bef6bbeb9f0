"""What valuestream remembers about one customer.

The state is a tree of small typed records. They are ``msgspec.Struct`` classes so that the
plumbing can store them compactly (positional arrays, see ``streams/codec.py``); the domain
only uses them as plain typed records. Amounts are exact decimals in the base currency;
times are aware UTC datetimes.

Identifiers that are only ever compared, never shown (event ids, email message ids, refund
ids, follow-ups already handled), are kept as 64-bit hashes (``id_hash``): 8 bytes instead of
a 20-40 character string. Two different ids share a hash with probability about n^2 / 2^65
for n ids of one customer, i.e. never in practice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from hashlib import blake2b

from msgspec import Struct, field

ZERO = Decimal(0)


def id_hash(text: str) -> int:
    """A stable 64-bit hash of an identifier (Python's own ``hash`` changes per process)."""
    return int.from_bytes(blake2b(text.encode(), digest_size=8).digest(), "big")


class Order(Struct, array_like=True, gc=False):
    placed_at: datetime
    currency: str
    fx_rate: Decimal  # base units per unit of the order's currency, fixed at placement
    revenue: Decimal
    discount: Decimal
    cost: Decimal
    lines_at: datetime  # occurred_at of the event whose lines are current (latest wins)
    payment_due_at: datetime | None = None
    refunded: Decimal = ZERO
    refund_ids: list[int] = []  # id_hash of each refund event applied
    cancelled: bool = False
    amended: bool = False
    paid_at: datetime | None = None
    # Revenue of the current lines by interest ("category:Books", "brand:Acme"), in the base
    # currency, and the SKUs in them (what the customer has bought).
    spend: dict[str, Decimal] = {}
    skus: list[str] = []

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


class Ticket(Struct, array_like=True, gc=False):
    opened_at: datetime | None  # None while only later events of the ticket have arrived
    priority: str
    is_open: bool
    status_at: datetime  # occurred_at of the event that set is_open (latest wins)
    csat: int | None = None
    rated_at: datetime | None = None

    @property
    def opened_or_seen_at(self) -> datetime:
        return self.opened_at or self.status_at


class Emails(Struct, array_like=True, gc=False):
    sent: set[int] = set()  # id_hash of distinct message ids
    opened: set[int] = set()
    clicked: set[int] = set()
    click_times: list[datetime] = []  # the last 90 days of clicks, oldest first
    last_open_at: datetime | None = None
    last_click_at: datetime | None = None
    unsubscribed: bool = False
    bounced: bool = False


class Source(Struct, array_like=True, gc=False, frozen=True):
    """Where a message came from: enough to write it as a dead letter with its original bytes,
    and to order it (``rank`` of its topic, ``offset``) among events of the same moment."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    rank: int = 0


class Parked(Struct, array_like=True, gc=False):
    """An order event whose order is not known yet, kept as its original message."""

    order_id: str
    occurred_at: datetime
    event_id: str
    expires_at: datetime  # processor time after which it becomes an orphan_expired dead letter
    source: Source


class PendingFollowUp(Struct, array_like=True, gc=False):
    reason: str
    due_at: datetime
    expires_at: datetime
    subject: str  # what it is about (a ticket id, the last order's time, a SKU, ...)
    detail: dict[str, str] | None = None  # what the context needs that the state lacks

    @property
    def key(self) -> int:
        return id_hash(f"{self.reason}|{self.subject}|{self.due_at.isoformat()}")


class Standing(Struct, array_like=True, gc=False, frozen=True):
    """Where the customer's last decision placed them, for the shop's overview (the stored
    record's header carries it, so the overview's aggregates never decode a state)."""

    clv_cents: int | None  # predicted CLV of the next 365 days, in cents
    r: int  # RFM recency and frequency scores, 1-5 (0: no purchase yet)
    f: int
    value: int  # the value half of a follow-up's priority, 0-100 (README, *Follow-ups*)


class Subscription(Struct, array_like=True, gc=False):
    """The latest subscribe or unsubscribe of one interest (latest ``at`` wins)."""

    active: bool
    at: datetime


class Referred(Struct, array_like=True, gc=False):
    """What one referred customer contributes to their referrer, as of ``at``."""

    at: datetime
    net_revenue: Decimal
    clv: Decimal | None
    first_order_at: datetime | None
    descendants: list[str] = []  # the customers they brought, directly or not


class CustomerState(Struct, array_like=True, gc=False):
    customer_id: str
    first_seen_at: datetime | None = None
    updated_at: datetime | None = None
    orders: dict[str, Order] = {}
    tickets: dict[str, Ticket] = {}
    emails: Emails = field(default_factory=Emails)
    parked: list[Parked] = []
    # id_hash(event_id) -> the processor day (days since 1970) it was first seen, oldest first.
    seen: dict[int, int] = {}
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
    followups: dict[str, PendingFollowUp] = {}
    followups_sent: dict[str, datetime] = {}
    followup_times: list[datetime] = []
    followups_done: dict[int, datetime] = {}
    # Interests: "kind:value" -> the latest subscription change; and the interests the
    # partition's index lists the customer under as last stored (``interests.index_keys``).
    subscriptions: dict[str, Subscription] = {}
    indexed: list[str] = []
    # Cross-sell: the recommended products (SKU, score) as of the customer's last change.
    recommended: list[tuple[str, float]] = []
    # Referrals: who brought this customer and when that was recorded; the customers this
    # one brought (their latest contribution each); a hash of the contribution last sent.
    referred_by: str | None = None
    referred_at: datetime | None = None
    referrals: dict[str, Referred] = {}
    referral_sent: int | None = None
    # The overview's view of the customer: the last decision's standing, and the follow-up
    # sent last (to call about until it expires).
    standing: Standing | None = None
    last_follow_up: PendingFollowUp | None = None

    @property
    def has_profile(self) -> bool:
        """False until the customer's first applied event (an erasure is none)."""
        return self.first_seen_at is not None

    @property
    def erased_only(self) -> bool:
        """Nothing but an erasure: no data of the customer is left (the worker stores an
        erasure marker instead)."""
        return self.erased_at is not None and self == CustomerState(
            self.customer_id, erased_at=self.erased_at)

    def next_deadline(self) -> datetime | None:
        """The next processor time at which time alone may change this state."""
        deadline = self.churn_check_at
        for parked in self.parked:
            if deadline is None or parked.expires_at < deadline:
                deadline = parked.expires_at
        for pending in self.followups.values():
            if deadline is None or pending.due_at < deadline:
                deadline = pending.due_at
        return deadline


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that becomes a dead letter: where it came from, a code and a message."""

    source: Source
    code: str
    message: str
