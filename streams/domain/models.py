"""Fitted model parameters as published on ``model-params``, and the defaults before a fit.

Defaults (time unit: day) describe a plausible small online shop: a customer buys about
every 160 days while active (r/alpha = 0.25/40), about one in four drops out after a purchase
(a/(a+b) = 0.8/3.3), and spends about 30 per purchase day (Gamma-Gamma mean p v/(q-1)).
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
    bgnbd=NbdParams(r=0.25, alpha=40.0, a=0.8, b=2.5),
    mbgnbd=NbdParams(r=0.25, alpha=40.0, a=0.8, b=2.5),
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
