"""Predictive value: P(alive), expected purchases and spend, CLV, RFM scores, value tier.

Live predictions use MBG/NBD, because under BG/NBD a one-time buyer is alive forever
(P(alive) = 1 at frequency 0); BG/NBD is fitted and published beside it for comparison.

* ``predicted_clv_365d`` = E[purchase days in the next 365 days] x E[net revenue per purchase
  day] (Gamma-Gamma) x margin rate, where the margin rate is the customer's own
  (gross margin - refunded margin) / net revenue, or the default margin while the customer
  has no net revenue. Refunds therefore lower both the spend and (through lost margin) the
  rate. No discounting.
* RFM: r, f, m are 1..5 against the published population quintiles of days since the last
  purchase (fewer is better), purchase days, and mean net revenue per purchase day; the
  segment comes from the widely used R x F map (Champions, Loyal Customers, ...).
* Value tier by predicted CLV: platinum, gold, silver at the published cut-offs, else bronze.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from streams.domain.btyd import (
    gamma_gamma_expected_value,
    mbgnbd_expected_purchases,
    mbgnbd_p_alive,
)
from streams.domain.history import PurchaseHistory
from streams.domain.models import ModelParams

TIERS = ("bronze", "silver", "gold", "platinum")  # lowest to highest

# The common RFM segment map on recency and frequency scores: (r range, f range, segment).
SEGMENTS: tuple[tuple[tuple[int, int], tuple[int, int], str], ...] = (
    ((1, 2), (1, 2), "Hibernating"),
    ((1, 2), (3, 4), "At Risk"),
    ((1, 2), (5, 5), "Can't Lose Them"),
    ((3, 3), (1, 2), "About To Sleep"),
    ((3, 3), (3, 3), "Need Attention"),
    ((3, 4), (4, 5), "Loyal Customers"),
    ((4, 4), (1, 1), "Promising"),
    ((5, 5), (1, 1), "New Customers"),
    ((4, 5), (2, 3), "Potential Loyalists"),
    ((5, 5), (4, 5), "Champions"),
)
SEGMENT_OF = {(r, f): name for (r_low, r_high), (f_low, f_high), name in SEGMENTS
              for r in range(r_low, r_high + 1) for f in range(f_low, f_high + 1)}


def segment(r: int, f: int) -> str:
    return SEGMENT_OF[r, f]


@dataclass(frozen=True, slots=True)
class Rfm:
    r: int
    f: int
    m: int
    segment: str


@dataclass(frozen=True, slots=True)
class Prediction:
    p_alive: float
    expected_purchases_90d: float
    expected_order_value: float
    predicted_clv_365d: float
    value_tier: str


class Predictor:
    """The model parameters in force, with the model formulas remembered per whole-day
    arguments (x, t_x, age): many customers share them, so most predictions are a lookup.
    At most ``memo_size`` entries of each are kept (a few MB)."""

    def __init__(self, params: ModelParams, memo_size: int = 65_536) -> None:
        self.params = params
        self.memo_size = memo_size
        self._alive: dict[tuple[int, int, int], float] = {}
        self._purchases: dict[tuple[int, int, int], tuple[float, float]] = {}

    def p_alive(self, history: PurchaseHistory, as_of: datetime) -> float:
        key = (history.frequency, history.recency_days, history.age_days(as_of))
        alive = self._alive.get(key)
        if alive is None:
            if len(self._alive) >= self.memo_size:
                self._alive.clear()
            alive = self._alive[key] = float(mbgnbd_p_alive(self.params.mbgnbd, *key))
        return alive

    def expected_purchases(self, history: PurchaseHistory, as_of: datetime
                           ) -> tuple[float, float]:
        """Expected purchase days in the next 90 and 365 days."""
        key = (history.frequency, history.recency_days, history.age_days(as_of))
        purchases = self._purchases.get(key)
        if purchases is None:
            if len(self._purchases) >= self.memo_size:
                self._purchases.clear()
            in_90, in_365 = mbgnbd_expected_purchases(self.params.mbgnbd, [90, 365], *key)
            purchases = self._purchases[key] = (float(in_90), float(in_365))
        return purchases

    def order_value(self, history: PurchaseHistory) -> float:
        """Gamma-Gamma expected net revenue per purchase day."""
        return float(gamma_gamma_expected_value(
            self.params.gamma_gamma, history.frequency, float(history.monetary_value)))

    def clv(self, history: PurchaseHistory, as_of: datetime, margin_rate: Decimal) -> float:
        _, purchases_365 = self.expected_purchases(history, as_of)
        return purchases_365 * self.order_value(history) * float(margin_rate)

    def predict(self, history: PurchaseHistory, as_of: datetime, margin_rate: Decimal
                ) -> Prediction:
        clv = self.clv(history, as_of, margin_rate)
        return Prediction(
            p_alive=self.p_alive(history, as_of),
            expected_purchases_90d=self.expected_purchases(history, as_of)[0],
            expected_order_value=self.order_value(history),
            predicted_clv_365d=clv,
            value_tier=value_tier(clv, self.params),
        )

    def rfm(self, history: PurchaseHistory, as_of: datetime) -> Rfm:
        cuts = self.params.rfm
        r = 6 - quintile(history.days_since_last(as_of), cuts.recency_days)
        f = quintile(history.purchase_days, cuts.frequency)
        m = quintile(float(history.mean_day_value), cuts.monetary)
        return Rfm(r=r, f=f, m=m, segment=segment(r, f))


def quintile(value: float, cuts: tuple[float, ...]) -> int:
    """1 + the number of cut-offs the value is above: 1..5."""
    return 1 + sum(1 for cut in cuts if value > cut)


def value_tier(clv: float, params: ModelParams) -> str:
    tiers = params.tiers
    if clv >= tiers.platinum:
        return "platinum"
    if clv >= tiers.gold:
        return "gold"
    if clv >= tiers.silver:
        return "silver"
    return "bronze"
