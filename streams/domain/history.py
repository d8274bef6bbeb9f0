"""A customer's purchase history in the BTYD convention, measured in whole UTC days."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from streams.domain.state import ZERO, CustomerState, Order


class PurchaseHistory:
    """Purchase days are the distinct UTC dates with at least one non-cancelled order."""

    __slots__ = ("first_day", "frequency", "last_day", "net_by_day", "recency_days")

    def __init__(self, net_by_day: dict[date, Decimal]) -> None:
        self.net_by_day = net_by_day  # net revenue (after refunds) per purchase day
        self.first_day = min(net_by_day)
        self.last_day = max(net_by_day)
        self.frequency = len(net_by_day) - 1  # repeat purchase days (x)
        self.recency_days = (self.last_day - self.first_day).days  # t_x

    @property
    def purchase_days(self) -> int:
        return len(self.net_by_day)

    def age_days(self, as_of: datetime) -> int:
        """as_of's UTC date - first purchase day (T); never less than the recency."""
        return max((as_of.astimezone(UTC).date() - self.first_day).days, self.recency_days)

    def days_since_last(self, as_of: datetime) -> int:
        return self.age_days(as_of) - self.recency_days

    @property
    def monetary_value(self) -> Decimal:
        """Mean net revenue per purchase day over the days after the first (0 if none)."""
        if self.frequency == 0:
            return ZERO
        total = sum(self.net_by_day.values(), ZERO) - self.net_by_day[self.first_day]
        return total / self.frequency

    @property
    def mean_day_value(self) -> Decimal:
        """Mean net revenue per purchase day over all purchase days (RFM's M)."""
        return sum(self.net_by_day.values(), ZERO) / self.purchase_days


def live_orders(state: CustomerState) -> list[Order]:
    """Non-cancelled orders, oldest first."""
    return sorted((o for o in state.orders.values() if not o.cancelled),
                  key=lambda o: o.placed_at)


def purchase_history(live: list[Order]) -> PurchaseHistory | None:
    """The history of the live (non-cancelled) orders; ``None`` before a first purchase."""
    if not live:
        return None
    net_by_day: dict[date, Decimal] = {}
    for order in live:
        day = order.placed_at.astimezone(UTC).date()
        net_by_day[day] = net_by_day.get(day, ZERO) + order.revenue - order.refunded
    return PurchaseHistory(net_by_day)
