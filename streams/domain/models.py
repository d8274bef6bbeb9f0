"""Fitted model parameters as published on ``model-params``, and the defaults before a fit.

Defaults (time unit: day) describe a plausible small online shop: an active customer buys
about every 110 days (alpha/r = 90/0.8), a third drop out after a purchase (a/(a+b) =
0.9/2.7), and a purchase day brings about 30 (Gamma-Gamma mean p v/(q-1) = 6 x 15/3). Under
them a one-time buyer reaches medium churn risk after about 40 silent days and high after
about a year and a half; a fit replaces all of this with what the shop's data says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import TypeAdapter

from streams.domain.btyd import GammaGammaParams, NbdParams


@dataclass(frozen=True, slots=True)
class RfmCuts:
    """Quintile boundaries (20/40/60/80 %) of the population, each ascending."""

    recency_days: tuple[float, float, float, float]  # days since the last purchase
    frequency: tuple[float, float, float, float]  # purchase days
    monetary: tuple[float, float, float, float]  # mean net revenue per purchase day


@dataclass(frozen=True, slots=True)
class TierCuts:
    """Lowest predicted 365-day CLV of each tier above bronze."""

    silver: float
    gold: float
    platinum: float


@dataclass(frozen=True, slots=True)
class ModelParams:
    bgnbd: NbdParams
    mbgnbd: NbdParams
    gamma_gamma: GammaGammaParams
    rfm: RfmCuts
    tiers: TierCuts
    time_unit: Literal["day"] = "day"
    fitted_at: datetime | None = None  # None: the documented defaults
    n_customers: int = 0
    log_likelihood: dict[str, float] = field(default_factory=dict)


DEFAULT_PARAMS = ModelParams(
    bgnbd=NbdParams(r=0.8, alpha=90.0, a=0.9, b=1.8),
    mbgnbd=NbdParams(r=0.8, alpha=90.0, a=0.9, b=1.8),
    gamma_gamma=GammaGammaParams(p=6.0, q=4.0, v=15.0),
    rfm=RfmCuts(
        recency_days=(30, 90, 180, 365),
        frequency=(1, 2, 3, 5),
        monetary=(20, 40, 75, 150),
    ),
    tiers=TierCuts(silver=25, gold=100, platinum=300),
)

_PARAMS = TypeAdapter(ModelParams)


def dump_params(params: ModelParams) -> bytes:
    return _PARAMS.dump_json(params)


def load_params(raw: bytes) -> ModelParams:
    """Parse a ``model-params`` record; pydantic's ValidationError says what is wrong."""
    return _PARAMS.validate_json(raw)
