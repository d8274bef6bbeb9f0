"""Maximum-likelihood fits of the BTYD models and the population cut-offs for RFM and tiers.

Customers with identical (x, t_x, T) are fitted once, weighted by their count: with whole
days, a million customers collapse to far fewer distinct histories. Parameters are fitted
as logarithms, so the optimiser works unconstrained and they stay positive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

from streams.domain.btyd import (
    GammaGammaParams,
    NbdParams,
    bgnbd_log_likelihood,
    gamma_gamma_expected_value,
    gamma_gamma_log_likelihood,
    mbgnbd_expected_purchases,
    mbgnbd_log_likelihood,
)
from streams.domain.models import DEFAULT_PARAMS, ModelParams, RfmCuts, TierCuts

MIN_CUSTOMERS = 30  # with fewer purchasing customers, the fit says the data is too thin
MIN_REPEAT_CUSTOMERS = 10  # likewise for Gamma-Gamma, which learns from repeat buyers
QUINTILES = (0.2, 0.4, 0.6, 0.8)
TIER_QUANTILES = (0.5, 0.8, 0.95)  # silver, gold, platinum: top 50 %, 20 %, 5 %


class FitError(Exception):
    """The data is too thin or the optimiser did not converge; nothing may be published."""


@dataclass(frozen=True, slots=True)
class Summaries:
    """One row per customer with at least one purchase, measured at the fit's as_of."""

    x: NDArray[np.float64]  # frequency
    t_x: NDArray[np.float64]  # recency in days
    T: NDArray[np.float64]  # age in days
    m: NDArray[np.float64]  # monetary value: mean net revenue per repeat purchase day
    day_value: NDArray[np.float64]  # mean net revenue per purchase day (RFM's M)
    margin: NDArray[np.float64]  # margin rate used for CLV

    def __len__(self) -> int:
        return len(self.x)


def _maximise(
    neg_mean_ll: Callable[[NDArray[np.float64]], float], start: NDArray[np.float64], name: str
) -> NDArray[np.float64]:
    result = minimize(neg_mean_ll, np.log(start), method="L-BFGS-B",
                      bounds=[(-12.0, 12.0)] * len(start))
    if not result.success or not np.isfinite(result.fun):
        result = minimize(neg_mean_ll, result.x, method="Nelder-Mead",
                          options={"maxiter": 4000, "xatol": 1e-7, "fatol": 1e-10})
    if not result.success or not np.isfinite(result.fun):
        raise FitError(f"{name} did not converge: {result.message}")
    return np.exp(result.x)


def fit_nbd(
    log_likelihood: Callable[..., NDArray[np.float64]],
    x: NDArray[np.float64], t_x: NDArray[np.float64], T: NDArray[np.float64],
    start: NbdParams, name: str,
) -> tuple[NbdParams, float]:
    """Fit (r, alpha, a, b); return them and the total log-likelihood at the optimum."""
    rows, weights = np.unique(np.column_stack([x, t_x, T]), axis=0, return_counts=True)
    ux, ut, uT = rows.T
    total = weights.sum()

    def neg_mean_ll(theta: NDArray[np.float64]) -> float:
        with np.errstate(all="ignore"):
            ll = log_likelihood(NbdParams(*np.exp(theta)), ux, ut, uT)
        value = -(weights * ll).sum() / total
        return float(value) if np.isfinite(value) else 1e12

    r, alpha, a, b = _maximise(neg_mean_ll, np.array([start.r, start.alpha, start.a, start.b]),
                               name)
    params = NbdParams(float(r), float(alpha), float(a), float(b))
    return params, float((weights * log_likelihood(params, ux, ut, uT)).sum())


def fit_gamma_gamma(
    x: NDArray[np.float64], m: NDArray[np.float64], start: GammaGammaParams
) -> tuple[GammaGammaParams, float]:
    """Fit (p, q, v) on the repeat buyers (x > 0, m > 0)."""
    keep = (x > 0) & (m > 0)
    x, m = x[keep], m[keep]
    if len(x) < MIN_REPEAT_CUSTOMERS:
        raise FitError(f"Gamma-Gamma needs at least {MIN_REPEAT_CUSTOMERS} repeat buyers with "
                       f"spend, found {len(x)}")

    def neg_mean_ll(theta: NDArray[np.float64]) -> float:
        with np.errstate(all="ignore"):
            value = -gamma_gamma_log_likelihood(GammaGammaParams(*np.exp(theta)), x, m).mean()
        return float(value) if np.isfinite(value) else 1e12

    p, q, v = _maximise(neg_mean_ll, np.array([start.p, start.q, start.v]), "Gamma-Gamma")
    if q <= 1:
        raise FitError(f"Gamma-Gamma fitted q = {q:.3f} <= 1: the mean spend is unbounded")
    params = GammaGammaParams(float(p), float(q), float(v))
    return params, float(gamma_gamma_log_likelihood(params, x, m).sum())


def fit_models(data: Summaries, as_of: datetime,
               start: ModelParams = DEFAULT_PARAMS) -> ModelParams:
    """Fit BG/NBD, MBG/NBD and Gamma-Gamma and compute the RFM and tier cut-offs."""
    if len(data) < MIN_CUSTOMERS:
        raise FitError(f"too few customers with a purchase to fit: {len(data)} "
                       f"(at least {MIN_CUSTOMERS})")
    bg, bg_ll = fit_nbd(bgnbd_log_likelihood, data.x, data.t_x, data.T, start.bgnbd, "BG/NBD")
    mbg, mbg_ll = fit_nbd(mbgnbd_log_likelihood, data.x, data.t_x, data.T, start.mbgnbd,
                          "MBG/NBD")
    gg, gg_ll = fit_gamma_gamma(data.x, data.m, start.gamma_gamma)
    clv = (mbgnbd_expected_purchases(mbg, 365, data.x, data.t_x, data.T)
           * gamma_gamma_expected_value(gg, data.x, data.m) * data.margin)
    silver, gold, platinum = (float(v) for v in np.quantile(clv, TIER_QUANTILES))
    return ModelParams(
        bgnbd=bg,
        mbgnbd=mbg,
        gamma_gamma=gg,
        rfm=RfmCuts(
            recency_days=_quintiles(data.T - data.t_x),
            frequency=_quintiles(data.x + 1),
            monetary=_quintiles(data.day_value),
        ),
        tiers=TierCuts(silver=silver, gold=gold, platinum=platinum),
        fitted_at=as_of.astimezone(UTC),
        n_customers=len(data),
        log_likelihood={"bgnbd": bg_ll, "mbgnbd": mbg_ll, "gamma_gamma": gg_ll},
    )


def _quintiles(values: NDArray[np.float64]) -> tuple[float, float, float, float]:
    q20, q40, q60, q80 = (float(v) for v in np.quantile(values, QUINTILES))
    return (q20, q40, q60, q80)
