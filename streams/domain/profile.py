"""The customer value profile: a pure view of a customer's state at a moment ``as_of``.

``as_of`` only sets the moment at which time-dependent fields are evaluated (age, tickets in
the last 90 days); the profile always reflects every event applied so far. Money is rounded
only here, at the edge (``streams.domain.money``); all arithmetic before is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from schemas.outputs import (
    ChurnReasonView,
    ChurnRiskView,
    InterestsView,
    InterestView,
    PendingFollowUpView,
    Profile,
    RecommendationView,
    RfmView,
    SubscriptionView,
)
from streams.domain.churn import ChurnRisk, ChurnScore, current_churn, explain
from streams.domain.history import PurchaseHistory, live_orders, purchase_history
from streams.domain.interests import InterestRules, ranked, split, subscribed
from streams.domain.money import money
from streams.domain.predict import Predictor, Rfm
from streams.domain.referrals import relationship_tier, totals
from streams.domain.rules import Rules
from streams.domain.state import ZERO, CustomerState, Order

RATE = Decimal("0.0001")
TICKET_WINDOW = timedelta(days=90)
DAY = timedelta(days=1)


def rate(part: Decimal | int, whole: Decimal | int) -> float | None:
    """A share rounded to 4 decimals; ``None`` when there is nothing to divide by."""
    if whole == 0:
        return None
    return float((Decimal(part) / Decimal(whole)).quantize(RATE, rounding=ROUND_HALF_UP))


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with ``Z``: how every output shows a time."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat().replace("+00:00", "Z")


def explained(score: ChurnScore) -> list[ChurnReasonView]:
    """A churn score's reasons with their points and meaning."""
    return [ChurnReasonView(code=code, points=points, text=text)
            for code, points, text in explain(score)]


def margin_rate(live: list[Order]) -> Decimal | None:
    """(gross margin - refunded margin) / net revenue of the live orders."""
    net_revenue = sum((o.revenue - o.refunded for o in live), ZERO)
    if not net_revenue:
        return None
    return sum((o.margin - o.refunded_margin for o in live), ZERO) / net_revenue


@dataclass(frozen=True, slots=True)
class Decided:
    """What a decision worked out at its moment, which the profile at that moment shares
    (the state's orders and level do not change between a decision and its snapshot)."""

    at: datetime
    live: list[Order]
    history: PurchaseHistory | None
    risk: ChurnRisk
    rfm: Rfm | None


def build_profile(state: CustomerState, as_of: datetime, rules: Rules,
                  predictor: Predictor, decided: Decided | None = None) -> Profile:
    """The profile of the README's *The profile* section (``decided``: the last decision,
    reused if it was taken at ``as_of``)."""
    if decided is not None and decided.at != as_of:
        decided = None
    live = decided.live if decided is not None else live_orders(state)
    all_orders = len(state.orders)
    revenue = refunds = gross_margin = refunded_margin = discounts = ZERO
    for order in live:
        revenue += order.revenue
        refunds += order.refunded
        gross_margin += order.margin
        refunded_margin += order.refunded_margin
        discounts += order.discount
    paid = late = amended = 0
    for order in state.orders.values():
        amended += order.amended
        if order.paid_at is not None:
            paid += 1
            late += order.paid_late
    cancelled = all_orders - len(live)
    support_cost = len(state.tickets) * rules.ticket_cost
    net_revenue = revenue - refunds
    history = decided.history if decided is not None else purchase_history(live)
    own_margin = (gross_margin - refunded_margin) / net_revenue if net_revenue else None
    emails = state.emails
    sent, opened = len(emails.sent), len(emails.opened)

    tickets = state.tickets.values()
    open_since = [t.opened_or_seen_at for t in tickets if t.is_open]
    window_start = as_of - TICKET_WINDOW
    rated = sorted((t for t in tickets if t.rated_at is not None),
                   key=lambda t: t.rated_at)  # type: ignore[arg-type, return-value]

    risk = (decided.risk if decided is not None
            else current_churn(state, history, as_of, predictor, rules.churn))
    brought = totals(state)
    prediction = None
    if history is not None:
        prediction = predictor.predict(
            history, as_of, own_margin if own_margin is not None else rules.default_margin)
    return Profile(
        customer_id=state.customer_id,
        as_of=as_of,
        currency=rules.currency,
        first_seen_at=state.first_seen_at,
        updated_at=state.updated_at,
        orders=len(live),
        first_order_at=live[0].placed_at if live else None,
        last_order_at=live[-1].placed_at if live else None,
        days_since_last_order=(max((as_of - live[-1].placed_at) // DAY, 0) if live else None),
        revenue=money(revenue),
        refunds=money(refunds),
        net_revenue=money(net_revenue),
        gross_margin=money(gross_margin),
        discounts=money(discounts),
        average_order_value=money(revenue / len(live)) if live else None,
        cancelled_orders=cancelled,
        amended_orders=amended,
        late_payments=late,
        paid_orders=paid,
        margin_rate=rate(own_margin, 1) if own_margin is not None else None,
        discount_rate=rate(discounts, revenue + discounts),
        cancel_rate=rate(cancelled, all_orders),
        amend_rate=rate(amended, all_orders),
        late_payment_rate=rate(late, paid),
        support_cost=money(support_cost),
        net_profit=money(gross_margin - refunded_margin - support_cost),
        tickets_total=len(state.tickets),
        tickets_open=len(open_since),
        tickets_90d=sum(1 for t in tickets if window_start < t.opened_or_seen_at <= as_of),
        oldest_open_ticket_at=min(open_since) if open_since else None,
        csat_average=rate(sum(t.csat or 0 for t in rated), len(rated)),
        csat_last=rated[-1].csat if rated else None,
        emails_sent=sent,
        emails_opened=opened,
        emails_clicked=len(emails.clicked),
        open_rate=rate(min(opened, sent), sent),
        last_open_at=emails.last_open_at,
        last_click_at=emails.last_click_at,
        unsubscribed=emails.unsubscribed,
        bounced=emails.bounced,
        **_purchase_statistics(history, as_of),
        p_alive=round(prediction.p_alive, 4) if prediction else None,
        expected_purchases_90d=(round(prediction.expected_purchases_90d, 4)
                                if prediction else None),
        expected_order_value=(money(Decimal(prediction.expected_order_value))
                              if prediction else None),
        predicted_clv_365d=(money(Decimal(prediction.predicted_clv_365d))
                            if prediction else None),
        churn_risk=ChurnRiskView(level=risk.level, score=risk.score.score,
                                 reasons=list(risk.score.reasons),
                                 reason_details=explained(risk.score)),
        rfm=_rfm(decided.rfm if decided is not None else
                 predictor.rfm(history, as_of) if history is not None else None),
        value_tier=relationship_tier(prediction.predicted_clv_365d if prediction else None,
                                     brought.referred_clv, bool(state.referrals),
                                     predictor.params),
        follow_ups=pending_follow_ups(state, as_of),
        interests=interests_view(state, live, as_of, rules.interests),
        recommended_products=[RecommendationView(sku=sku, score=score)
                              for sku, score in state.recommended],
        referred_by=state.referred_by,
        referrals=brought.referrals,
        referred_buyers=brought.referred_buyers,
        referred_net_revenue=money(brought.referred_net_revenue),
        referred_clv_365d=money(brought.referred_clv),
        relationship_value_365d=(
            money(Decimal(prediction.predicted_clv_365d) + brought.referred_clv) if prediction
            else money(brought.referred_clv) if state.referrals else None),
    )


def interests_view(state: CustomerState, live: list[Order], as_of: datetime,
                   rules: InterestRules) -> InterestsView:
    top: dict[str, list[InterestView]] = {"category": [], "brand": []}
    for interest in ranked(live, as_of, rules):
        shown = top[interest.kind]
        if len(shown) < rules.top:
            shown.append(InterestView(value=interest.value, score=money(interest.score),
                                      share=rate(interest.share, 1) or 0.0,
                                      favourite=interest.favourite))
    return InterestsView(
        categories=top["category"], brands=top["brand"],
        subscribed=[SubscriptionView(kind=kind, value=value, since=since)
                    for kind, value, since in ((*split(name), at)
                                               for name, at in subscribed(state))])


def pending_follow_ups(state: CustomerState, as_of: datetime) -> list[PendingFollowUpView]:
    """The follow-ups planned and not yet expired at ``as_of``."""
    return [
        PendingFollowUpView(reason=f.reason, due_at=f.due_at, expires_at=f.expires_at)
        for f in sorted(state.followups.values(), key=lambda f: (f.due_at, f.reason))
        if f.expires_at > as_of
    ]


def _purchase_statistics(history: PurchaseHistory | None, as_of: datetime
                         ) -> dict[str, int | str | None]:
    if history is None:
        return {"frequency": None, "recency_days": None, "age_days": None, "monetary_value": None}
    return {
        "frequency": history.frequency,
        "recency_days": history.recency_days,
        "age_days": history.age_days(as_of),
        "monetary_value": money(history.monetary_value),
    }


def _rfm(rfm: Rfm | None) -> RfmView | None:
    return RfmView(r=rfm.r, f=rfm.f, m=rfm.m, segment=rfm.segment) if rfm is not None else None
