"""Maximum-likelihood fits of the BTYD models and the population cut-offs for RFM and tiers.

Customers with identical (x, t_x, T) are fitted once, weighted by their count: with whole
days, a million customers collapse to far fewer distinct histories. Parameters are fitted
as logarithms, so the optimiser works unconstrained and they stay positive.

A fit is refused when the history cannot say anything (too few buyers or repeat buyers, or
a history shorter than a few times the usual gap between purchases), and a model whose
parameters the data does not pin down (the optimum sits on a bound of the search, or the
likelihood barely changes when a parameter doubles) keeps its defaults, with a warning
(README, *Models*).
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
MIN_HISTORY_DAYS = 28.0  # the oldest customer's age: less, and nobody can have lapsed yet
GAPS_PER_HISTORY = 3.0  # the history spans at least this many median gaps between purchases
LOG_BOUND = 12.0  # parameters are searched within exp(-12) .. exp(12)
ON_BOUND = 11.5  # a fitted log-parameter this close to the bound: not identified
FLAT = 1e-4  # mean log-likelihood gained per customer by a parameter's value, at least
QUINTILES = (0.2, 0.4, 0.6, 0.8)
TIER_QUANTILES = (0.5, 0.8, 0.95)  # silver, gold, platinum: top 50 %, 20 %, 5 %


class FitError(Exception):
    """The data is too thin or the optimiser did not converge; nothing may be published."""


class NotIdentified(Exception):
    """The data does not pin a model's parameters down: keep its defaults."""


@dataclass(frozen=True, slots=True)
class Fit:
    params: ModelParams
    warnings: list[str]  # models that kept their defaults, and why


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
    neg_mean_ll: Callable[[NDArray[np.float64]], float], start: NDArray[np.float64], name: str,
    names: tuple[str, ...],
) -> NDArray[np.float64]:
    result = minimize(neg_mean_ll, np.log(start), method="L-BFGS-B",
                      bounds=[(-LOG_BOUND, LOG_BOUND)] * len(start))
    if not result.success or not np.isfinite(result.fun):
        result = minimize(neg_mean_ll, result.x, method="Nelder-Mead",
                          options={"maxiter": 4000, "xatol": 1e-7, "fatol": 1e-10})
    if not result.success or not np.isfinite(result.fun):
        raise FitError(f"{name} did not converge: {result.message}")
    _check_identified(neg_mean_ll, result.x, float(result.fun), name, names)
    return np.exp(result.x)


def _check_identified(neg_mean_ll: Callable[[NDArray[np.float64]], float],
                      theta: NDArray[np.float64], best: float, name: str,
                      names: tuple[str, ...]) -> None:
    """Raise NotIdentified when a parameter sits on the search's bound, or when halving or
    doubling it changes the mean log-likelihood by less than ``FLAT``."""
    for i, value in enumerate(theta):
        if abs(value) >= ON_BOUND:
            raise NotIdentified(f"{name}: {names[i]} = {np.exp(value):.3g} is at the edge of "
                                "what the fit searches")
        step = np.zeros_like(theta)
        step[i] = np.log(2.0)
        if min(neg_mean_ll(theta + step), neg_mean_ll(theta - step)) - best < FLAT:
            raise NotIdentified(f"{name}: the data barely changes with {names[i]} (halving or "
                                "doubling it costs almost no likelihood)")


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
                               name, ("r", "alpha", "a", "b"))
    params = NbdParams(float(r), float(alpha), float(a), float(b))
    return params, float((weights * log_likelihood(params, ux, ut, uT)).sum())


def _repeat_spend(x: NDArray[np.float64], m: NDArray[np.float64]
                  ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Gamma-Gamma learns from repeat buyers with spend (x > 0, m > 0) only."""
    keep = (x > 0) & (m > 0)
    return x[keep], m[keep]


def fit_gamma_gamma(
    x: NDArray[np.float64], m: NDArray[np.float64], start: GammaGammaParams
) -> tuple[GammaGammaParams, float]:
    """Fit (p, q, v) on the repeat buyers (x > 0, m > 0)."""
    x, m = _repeat_spend(x, m)
    if len(x) < MIN_REPEAT_CUSTOMERS:
        raise FitError(f"Gamma-Gamma needs at least {MIN_REPEAT_CUSTOMERS} repeat buyers with "
                       f"spend, found {len(x)}")

    def neg_mean_ll(theta: NDArray[np.float64]) -> float:
        with np.errstate(all="ignore"):
            value = -gamma_gamma_log_likelihood(GammaGammaParams(*np.exp(theta)), x, m).mean()
        return float(value) if np.isfinite(value) else 1e12

    p, q, v = _maximise(neg_mean_ll, np.array([start.p, start.q, start.v]), "Gamma-Gamma",
                        ("p", "q", "v"))
    if q <= 1:
        raise FitError(f"Gamma-Gamma fitted q = {q:.3f} <= 1: the mean spend is unbounded")
    params = GammaGammaParams(float(p), float(q), float(v))
    return params, float(gamma_gamma_log_likelihood(params, x, m).sum())


def check_history(data: Summaries) -> None:
    """Refuse a history too short or too thin to fit anything (FitError says why)."""
    if len(data) < MIN_CUSTOMERS:
        raise FitError(f"too few customers with a purchase to fit: {len(data)} "
                       f"(at least {MIN_CUSTOMERS})")
    # A history too short is said first: with more of it, the other counts change too.
    span = float(data.T.max())
    if span < MIN_HISTORY_DAYS:
        raise FitError(f"the history spans {span:.0f} days; a fit needs at least "
                       f"{MIN_HISTORY_DAYS:.0f}")
    repeat = data.x > 0
    if repeat.sum() < MIN_REPEAT_CUSTOMERS:
        raise FitError(f"too few repeat buyers to fit: {int(repeat.sum())} (at least "
                       f"{MIN_REPEAT_CUSTOMERS})")
    gap = float(np.median(data.t_x[repeat] / data.x[repeat]))
    if span < GAPS_PER_HISTORY * gap:
        raise FitError(f"the history spans {span:.0f} days; a fit needs at least "
                       f"{GAPS_PER_HISTORY:.0f} times the median gap between a customer's "
                       f"purchases ({gap:.1f} days)")


def fit_models(data: Summaries, as_of: datetime,
               start: ModelParams = DEFAULT_PARAMS) -> Fit:
    """Fit BG/NBD, MBG/NBD and Gamma-Gamma and compute the RFM and tier cut-offs. A model
    the data does not identify keeps its parameters from ``start``, with a warning."""
    check_history(data)
    warnings: list[str] = []
    nbd: dict[str, tuple[NbdParams, float]] = {}
    for name, log_likelihood, first in (("BG/NBD", bgnbd_log_likelihood, start.bgnbd),
                                        ("MBG/NBD", mbgnbd_log_likelihood, start.mbgnbd)):
        try:
            nbd[name] = fit_nbd(log_likelihood, data.x, data.t_x, data.T, first, name)
        except NotIdentified as exc:
            warnings.append(f"{exc}; {name} keeps its parameters")
            nbd[name] = first, float(log_likelihood(first, data.x, data.t_x, data.T).sum())
    (bg, bg_ll), (mbg, mbg_ll) = nbd["BG/NBD"], nbd["MBG/NBD"]
    try:
        gg, gg_ll = fit_gamma_gamma(data.x, data.m, start.gamma_gamma)
    except NotIdentified as exc:
        warnings.append(f"{exc}; Gamma-Gamma keeps its parameters")
        gg = start.gamma_gamma
        gg_ll = float(gamma_gamma_log_likelihood(gg, *_repeat_spend(data.x, data.m)).sum())
    clv = (mbgnbd_expected_purchases(mbg, 365, data.x, data.t_x, data.T)
           * gamma_gamma_expected_value(gg, data.x, data.m) * data.margin)
    silver, gold, platinum = (_cents(v) for v in np.quantile(clv, TIER_QUANTILES))
    params = ModelParams(
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
    return Fit(params, warnings)


def _cents(value: float) -> float:
    """Cut-offs are shown and published to two decimals (money, days, purchase days)."""
    return round(float(value), 2)


def _quintiles(values: NDArray[np.float64]) -> tuple[float, float, float, float]:
    q20, q40, q60, q80 = (_cents(v) for v in np.quantile(values, QUINTILES))
    return (q20, q40, q60, q80)
