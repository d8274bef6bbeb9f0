"""A customer's purchase history in the BTYD convention, measured in whole UTC days."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from streams.domain.state import ZERO, CustomerState


@dataclass(frozen=True, slots=True)
class PurchaseHistory:
    """Purchase days are the distinct UTC dates with at least one non-cancelled order."""

    net_by_day: dict[date, Decimal]  # net revenue (after refunds) per purchase day

    @property
    def first_day(self) -> date:
        return min(self.net_by_day)

    @property
    def last_day(self) -> date:
        return max(self.net_by_day)

    @property
    def purchase_days(self) -> int:
        return len(self.net_by_day)

    @property
    def frequency(self) -> int:
        """Repeat purchase days (x)."""
        return self.purchase_days - 1

    @property
    def recency_days(self) -> int:
        """Last purchase day - first purchase day (t_x)."""
        return (self.last_day - self.first_day).days

    def age_days(self, as_of: datetime) -> int:
        """as_of's UTC date - first purchase day (T); never less than the recency."""
        return max((as_of.astimezone(UTC).date() - self.first_day).days, self.recency_days)

    def days_since_last(self, as_of: datetime) -> int:
        return self.age_days(as_of) - self.recency_days

    @property
    def monetary_value(self) -> Decimal:
        """Mean net revenue per purchase day over the days after the first (0 if none)."""
        days = sorted(self.net_by_day)[1:]
        if not days:
            return ZERO
        return sum((self.net_by_day[d] for d in days), ZERO) / len(days)

    @property
    def mean_day_value(self) -> Decimal:
        """Mean net revenue per purchase day over all purchase days (RFM's M)."""
        return sum(self.net_by_day.values(), ZERO) / self.purchase_days


def purchase_history(state: CustomerState) -> PurchaseHistory | None:
    """``None`` before a first (non-cancelled) purchase."""
    net_by_day: dict[date, Decimal] = defaultdict(lambda: ZERO)
    for order in state.orders.values():
        if not order.cancelled:
            net_by_day[order.placed_at.astimezone(UTC).date()] += order.revenue - order.refunded
    return PurchaseHistory(dict(net_by_day)) if net_by_day else None
