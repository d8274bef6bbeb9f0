"""The customer value profile: a pure view of a customer's state at a moment ``as_of``.

``as_of`` only sets the moment at which time-dependent fields are evaluated (age, tickets in
the last 90 days); the profile always reflects every event applied so far. Money is rounded
half-up to cents only here, at the edge; all arithmetic before is exact.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from streams.domain.churn import current_churn
from streams.domain.history import PurchaseHistory, purchase_history
from streams.domain.models import ModelParams
from streams.domain.predict import predict
from streams.domain.rules import Rules
from streams.domain.state import ZERO, CustomerState

CENT = Decimal("0.01")
RATE = Decimal("0.0001")
TICKET_WINDOW = timedelta(days=90)


def money(amount: Decimal) -> float:
    """Round to cents. A float of a cent-rounded decimal prints as exactly that decimal."""
    return float(amount.quantize(CENT, rounding=ROUND_HALF_UP))


def rate(part: Decimal | int, whole: Decimal | int) -> float | None:
    """A share rounded to 4 decimals; ``None`` when there is nothing to divide by."""
    if whole == 0:
        return None
    return float((Decimal(part) / Decimal(whole)).quantize(RATE, rounding=ROUND_HALF_UP))


def timestamp(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def build_profile(
    state: CustomerState, as_of: datetime, rules: Rules, params: ModelParams
) -> dict[str, Any]:
    """The profile of SPEC section 4 as a JSON-ready dict."""
    live = [o for o in state.orders.values() if not o.cancelled]
    cancelled = len(state.orders) - len(live)
    revenue = sum((o.revenue for o in live), ZERO)
    refunds = sum((o.refunded for o in live), ZERO)
    gross_margin = sum((o.margin for o in live), ZERO)
    refunded_margin = sum((o.refunded_margin for o in live), ZERO)
    discounts = sum((o.discount for o in live), ZERO)
    support_cost = len(state.tickets) * rules.ticket_cost
    paid = [o for o in state.orders.values() if o.paid_at is not None]
    late = sum(1 for o in paid if o.paid_late)
    amended = sum(1 for o in state.orders.values() if o.amended)
    net_revenue = revenue - refunds
    history = purchase_history(state)
    margin_rate = (gross_margin - refunded_margin) / net_revenue if net_revenue else None

    return {
        "customer_id": state.customer_id,
        "as_of": timestamp(as_of),
        "first_seen_at": timestamp(state.first_seen_at),
        "updated_at": timestamp(state.updated_at),
        # purchases
        "orders": len(live),
        "first_order_at": timestamp(min((o.placed_at for o in live), default=None)),
        "last_order_at": timestamp(max((o.placed_at for o in live), default=None)),
        "revenue": money(revenue),
        "refunds": money(refunds),
        "net_revenue": money(net_revenue),
        "gross_margin": money(gross_margin),
        "discounts": money(discounts),
        "average_order_value": money(revenue / len(live)) if live else None,
        "cancelled_orders": cancelled,
        "amended_orders": amended,
        "late_payments": late,
        "paid_orders": len(paid),
        # profitability
        "margin_rate": rate(margin_rate, 1) if margin_rate is not None else None,
        "discount_rate": rate(discounts, revenue + discounts),
        "cancel_rate": rate(cancelled, len(state.orders)),
        "amend_rate": rate(amended, len(state.orders)),
        "late_payment_rate": rate(late, len(paid)),
        "support_cost": money(support_cost),
        "net_profit": money(gross_margin - refunded_margin - support_cost),
        **_service(state, as_of),
        **_engagement(state),
        **_purchase_statistics(history, as_of),
        **_predictive(state, history, as_of, margin_rate, rules, params),
        "follow_ups": pending_follow_ups(state),
    }


def pending_follow_ups(state: CustomerState) -> list[dict[str, Any]]:
    return [
        {"reason": f.reason, "due_at": timestamp(f.due_at), "expires_at": timestamp(f.expires_at)}
        for f in sorted(state.followups.values(), key=lambda f: (f.due_at, f.reason))
    ]


def _service(state: CustomerState, as_of: datetime) -> dict[str, Any]:
    tickets = state.tickets.values()
    open_since = [t.opened_at or t.status_at for t in tickets if t.is_open]
    window_start = as_of - TICKET_WINDOW
    rated = sorted((t for t in tickets if t.rated_at is not None), key=lambda t: t.rated_at)  # type: ignore[arg-type, return-value]
    return {
        "tickets_total": len(state.tickets),
        "tickets_open": len(open_since),
        "tickets_90d": sum(
            1 for t in tickets if window_start < (t.opened_at or t.status_at) <= as_of
        ),
        "oldest_open_ticket_at": timestamp(min(open_since, default=None)),
        "csat_average": rate(sum(t.csat or 0 for t in rated), len(rated)),
        "csat_last": rated[-1].csat if rated else None,
    }


def _engagement(state: CustomerState) -> dict[str, Any]:
    emails = state.emails
    opened = len(emails.opened)
    return {
        "emails_sent": len(emails.sent),
        "emails_opened": opened,
        "emails_clicked": len(emails.clicked),
        "open_rate": rate(min(opened, len(emails.sent)), len(emails.sent)),
        "last_open_at": timestamp(emails.last_open_at),
        "last_click_at": timestamp(emails.last_click_at),
        "unsubscribed": emails.unsubscribed,
        "bounced": emails.bounced,
    }


def _purchase_statistics(history: PurchaseHistory | None, as_of: datetime) -> dict[str, Any]:
    if history is None:
        return {"frequency": None, "recency_days": None, "age_days": None, "monetary_value": None}
    return {
        "frequency": history.frequency,
        "recency_days": history.recency_days,
        "age_days": history.age_days(as_of),
        "monetary_value": money(history.monetary_value),
    }


def _predictive(state: CustomerState, history: PurchaseHistory | None, as_of: datetime,
                margin_rate: Decimal | None, rules: Rules, params: ModelParams) -> dict[str, Any]:
    level, churn, _ = current_churn(state, as_of, params, rules.churn, history)
    block: dict[str, Any] = {
        "p_alive": None,
        "expected_purchases_90d": None,
        "expected_order_value": None,
        "predicted_clv_365d": None,
        "churn_risk": {"level": level, "score": churn.score, "reasons": list(churn.reasons)},
        "rfm": None,
        "value_tier": None,
    }
    if history is not None:
        margin = margin_rate if margin_rate is not None else rules.default_margin
        prediction = predict(history, as_of, margin, params)
        block.update(
            p_alive=round(prediction.p_alive, 4),
            expected_purchases_90d=round(prediction.expected_purchases_90d, 4),
            expected_order_value=money(Decimal(prediction.expected_order_value)),
            predicted_clv_365d=money(Decimal(prediction.predicted_clv_365d)),
            rfm=prediction.rfm,
            value_tier=prediction.value_tier,
        )
    return block
