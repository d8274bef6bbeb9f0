"""What the models expect of a customer over the next year if nothing happens: P(alive) day by
day, the purchase days expected so far, and the P(alive) at which purchase silence alone
takes the churn score to each threshold (README, *The shop's pages*). The customer page
draws it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from streams.domain.btyd import NbdParams, mbgnbd_expected_purchases, mbgnbd_p_alive
from streams.domain.churn_rules import ChurnRules
from streams.domain.history import PurchaseHistory

HORIZON_DAYS = 365
STEP_DAYS = 7


@dataclass(frozen=True, slots=True)
class Projection:
    days: list[int]  # days after as_of
    p_alive: list[float]  # at each of them
    expected_purchases: list[float]  # purchase days expected from as_of up to each of them
    medium_below: float  # P(alive) under which the score reaches medium (1.0: already)
    high_below: float


def threshold_p_alive(threshold: int, other_points: int) -> float:
    """The P(alive) at or under which purchase silence (floor(100 (1 - P(alive))) points)
    plus ``other_points`` reaches ``threshold``."""
    needed = threshold - other_points
    return 1.0 if needed <= 0 else max(0.0, 1 - needed / 100)


def project(history: PurchaseHistory, as_of: datetime, params: NbdParams, other_points: int,
            rules: ChurnRules) -> Projection:
    """``other_points``: the churn score's service and engagement points now, held constant."""
    days = list(range(0, HORIZON_DAYS + 1, STEP_DAYS))
    if days[-1] != HORIZON_DAYS:
        days.append(HORIZON_DAYS)
    age = history.age_days(as_of)
    x, t_x = history.frequency, history.recency_days
    alive = mbgnbd_p_alive(params, [x] * len(days), [t_x] * len(days), [age + d for d in days])
    purchases = mbgnbd_expected_purchases(params, days, x, t_x, age)
    return Projection(days=days, p_alive=[float(p) for p in alive],
                      expected_purchases=[max(float(e), 0.0) for e in purchases],
                      medium_below=threshold_p_alive(rules.medium, other_points),
                      high_below=threshold_p_alive(rules.high, other_points))
