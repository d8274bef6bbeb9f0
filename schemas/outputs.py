"""Typed models of every record valuestream writes: profiles (``customer-value``),
churn-risk changes (``churn-risk``), follow-ups (``follow-ups``) and dead letters
(``dead-letters``).

They are ``msgspec`` structs: a worker builds and encodes one or more per event, and
msgspec does both in about a microsecond. The JSON Schema files beside this module are
exported from them (``python -m schemas.export``); ``tests/test_schemas.py`` checks that the
files are current and that records written by a real worker validate against them.

Times are RFC 3339 strings in UTC with ``Z`` (aware UTC datetimes, which msgspec writes so);
money is exact decimal text with two decimals ("1234.50"), rounded half-up to cents, in the
base currency that every record with amounts names in its ``currency`` field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from streams.domain.churn import LEVELS
from streams.domain.followups import REASONS
from streams.domain.predict import TIERS

Time = datetime  # always UTC
Money = Annotated[str, Meta(pattern=r"^-?[0-9]+\.[0-9]{2}$", description=(
    "decimal text in the record's currency, rounded half-up to cents"))]
Currency = Annotated[str, Meta(pattern="^[A-Z]{3}$", description=(
    "ISO 4217 code of every amount in the record (VALUESTREAM_CURRENCY)"))]
Rate = Annotated[float, Meta(ge=0, description="rounded half-up to 4 decimals")]
# The names are defined once, by the domain rules that use them.
Level = Literal[LEVELS]  # type: ignore[valid-type]
Tier = Literal[TIERS]  # type: ignore[valid-type]
Reason = Literal[tuple(REASONS)]  # type: ignore[valid-type]


class Output(Struct, kw_only=True, gc=False):
    """Base of the output records (no fields of its own)."""


class ChurnReasonView(Output):
    """One term of a churn score: what it is, what it adds, what it means."""

    code: str
    points: Annotated[int, Meta(ge=0, le=100)]
    text: str


class ChurnRiskView(Output):
    level: Level
    score: Annotated[int, Meta(ge=0, le=100)]
    reasons: list[str]  # the codes of reason_details, kept for existing readers
    reason_details: list[ChurnReasonView]  # largest contribution first


class RfmView(Output):
    r: Annotated[int, Meta(ge=1, le=5)]
    f: Annotated[int, Meta(ge=1, le=5)]
    m: Annotated[int, Meta(ge=1, le=5)]
    segment: str


class PendingFollowUpView(Output):
    reason: Reason
    due_at: Time
    expires_at: Time


class InterestView(Output):
    value: str
    score: Money  # decayed net spend (README, *Interests*)
    share: Rate  # of the customer's decayed spend of this kind
    favourite: bool


class SubscriptionView(Output):
    kind: Literal["category", "brand"]
    value: str
    since: Time


class InterestsView(Output):
    categories: list[InterestView]  # highest score first, at most 5
    brands: list[InterestView]
    subscribed: list[SubscriptionView]


class RecommendationView(Output):
    sku: str
    score: Annotated[float, Meta(ge=0, description="summed cosine similarity, 4 decimals")]


class Profile(Output):
    """A customer's value profile at ``as_of`` (README, *The profile*)."""

    customer_id: str
    as_of: Time
    currency: Currency
    first_seen_at: Time | None
    updated_at: Time | None
    orders: int
    first_order_at: Time | None
    last_order_at: Time | None
    days_since_last_order: Annotated[int, Meta(ge=0)] | None  # whole days to as_of
    revenue: Money
    refunds: Money
    net_revenue: Money
    gross_margin: Money
    discounts: Money
    average_order_value: Money | None
    cancelled_orders: int
    amended_orders: int
    late_payments: int
    paid_orders: int
    margin_rate: float | None
    discount_rate: Rate | None
    cancel_rate: Rate | None
    amend_rate: Rate | None
    late_payment_rate: Rate | None
    support_cost: Money
    net_profit: Money
    tickets_total: int
    tickets_open: int
    tickets_90d: int
    oldest_open_ticket_at: Time | None
    csat_average: float | None
    csat_last: int | None
    emails_sent: int
    emails_opened: int
    emails_clicked: int
    open_rate: Rate | None
    last_open_at: Time | None
    last_click_at: Time | None
    unsubscribed: bool
    bounced: bool
    frequency: int | None
    recency_days: int | None
    age_days: int | None
    monetary_value: Money | None
    p_alive: float | None
    expected_purchases_90d: float | None
    expected_order_value: Money | None
    predicted_clv_365d: Money | None
    churn_risk: ChurnRiskView
    rfm: RfmView | None
    value_tier: Tier | None
    follow_ups: list[PendingFollowUpView]
    interests: InterestsView
    recommended_products: list[RecommendationView]  # best first, at most 5
    referred_by: str | None  # README, *Referrals*
    referrals: int
    referred_buyers: int
    referred_net_revenue: Money
    referred_clv_365d: Money
    relationship_value_365d: Money | None  # own predicted CLV + referred_clv_365d


class ChurnRiskChanged(Output, kw_only=True):
    """A customer's churn-risk level changed (README, *Churn risk*)."""

    event_id: str
    type: Literal["churn_risk.changed"] = "churn_risk.changed"
    customer_id: str
    occurred_at: Time
    level: Level
    previous_level: Level
    score: Annotated[int, Meta(ge=0, le=100)]
    p_alive: float | None
    reasons: list[str]  # the codes of reason_details, kept for existing readers
    reason_details: list[ChurnReasonView]  # largest contribution first
    predicted_clv_365d: Money | None
    currency: Currency
    value_tier: Tier | None


class FollowUpDue(Output, kw_only=True):
    """Time to contact a customer, and why (README, *Follow-ups*)."""

    event_id: str
    type: Literal["follow_up.due"] = "follow_up.due"
    customer_id: str
    occurred_at: Time
    reason: Reason
    due_at: Time
    expires_at: Time
    priority: Annotated[int, Meta(ge=0, le=100)]
    suggested_action: str
    context: dict[str, Any]  # amounts in it (predicted_clv_365d) are Money
    currency: Currency


class DeadLetterError(Output):
    code: str
    message: str


class DeadLetter(Output):
    """A message valuestream could not apply, as received (README, *Dead letters*)."""

    source_topic: str
    partition: int
    offset: int
    key: str | None
    key_base64: bool
    value: str | None
    value_base64: bool
    error: DeadLetterError
    received_at: Time
    truncated: bool  # key and value are only the first 4,096 bytes of each
    value_bytes: int  # the size of the original value
    value_sha256: str | None  # SHA-256 (hex) of the original value, when truncated


# topic (without prefix) -> the model of its values
OUTPUTS: dict[str, type[Output]] = {
    "customer-value": Profile,
    "churn-risk": ChurnRiskChanged,
    "follow-ups": FollowUpDue,
    "dead-letters": DeadLetter,
}
