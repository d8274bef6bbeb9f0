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
from functools import lru_cache
from typing import Any

from streams.domain.btyd import (
    NbdParams,
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


def segment(r: int, f: int) -> str:
    return next(name for (r_low, r_high), (f_low, f_high), name in SEGMENTS
                if r_low <= r <= r_high and f_low <= f <= f_high)


@dataclass(frozen=True, slots=True)
class Prediction:
    p_alive: float
    expected_purchases_90d: float
    expected_order_value: float
    predicted_clv_365d: float
    rfm: dict[str, Any]
    value_tier: str


# The model formulas take whole days (x, t_x, age), so customers share arguments: one
# evaluation each, remembered (at most 65,536 of each, a few MB).
@lru_cache(maxsize=65_536)
def _p_alive(params: NbdParams, x: int, t_x: int, age: int) -> float:
    return float(mbgnbd_p_alive(params, x, t_x, age))


@lru_cache(maxsize=65_536)
def _expected_purchases(params: NbdParams, x: int, t_x: int, age: int) -> tuple[float, float]:
    in_90, in_365 = mbgnbd_expected_purchases(params, [90, 365], x, t_x, age)
    return float(in_90), float(in_365)


def p_alive(history: PurchaseHistory, as_of: datetime, params: ModelParams) -> float:
    return _p_alive(params.mbgnbd, history.frequency, history.recency_days,
                    history.age_days(as_of))


def predict(history: PurchaseHistory, as_of: datetime, margin_rate: Decimal,
            params: ModelParams) -> Prediction:
    x, t_x, age = history.frequency, history.recency_days, history.age_days(as_of)
    purchases_90, purchases_365 = _expected_purchases(params.mbgnbd, x, t_x, age)
    order_value = float(gamma_gamma_expected_value(params.gamma_gamma, x,
                                                   float(history.monetary_value)))
    clv = purchases_365 * order_value * float(margin_rate)
    return Prediction(
        p_alive=p_alive(history, as_of, params),
        expected_purchases_90d=purchases_90,
        expected_order_value=order_value,
        predicted_clv_365d=clv,
        rfm=rfm(history, as_of, params),
        value_tier=value_tier(clv, params),
    )


def quintile(value: float, cuts: tuple[float, ...]) -> int:
    """1 + the number of cut-offs the value is above: 1..5."""
    return 1 + sum(1 for cut in cuts if value > cut)


def rfm(history: PurchaseHistory, as_of: datetime, params: ModelParams) -> dict[str, Any]:
    cuts = params.rfm
    r = 6 - quintile(history.days_since_last(as_of), cuts.recency_days)
    f = quintile(history.purchase_days, cuts.frequency)
    m = quintile(float(history.mean_day_value), cuts.monetary)
    return {"r": r, "f": f, "m": m, "segment": segment(r, f)}


def value_tier(clv: float, params: ModelParams) -> str:
    tiers = params.tiers
    if clv >= tiers.platinum:
        return "platinum"
    if clv >= tiers.gold:
        return "gold"
    if clv >= tiers.silver:
        return "silver"
    return "bronze"
