"""Buy-till-you-die models, in days, as pure functions of a customer's purchase history.

A history is ``x`` (repeat purchases = frequency), ``t_x`` (time of the last purchase since
the first = recency) and ``T`` (time since the first purchase = age). Every function takes
floats or numpy arrays and is evaluated in log space where it matters.

* BG/NBD: Fader, Hardie and Lee (2005), "Counting Your Customers" the Easy Way.
* MBG/NBD: Batislam, Denizel and Filiztekin (2007): like BG/NBD, but a customer may also
  drop out right after the first purchase, so a one-time buyer's P(alive) falls with time.
* Gamma-Gamma: Fader, Hardie and Lee (2005), RFM and CLV: expected spend per purchase.

The conditional expectations contain ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, B; C; z) with
z = t/(alpha+T+t) and C - B = a - 1. Applying Pfaff's transformation twice turns it into
((alpha+T)/(alpha+T+t))^(a-1) 2F1(C-r-x, a-1; C; z): the same z in [0, 1), and no parameter
grows with x except C, which only speeds the series up. Large frequencies and ages neither
overflow nor lose precision, and young customers (tiny alpha + T) stay finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import mpmath
import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betaln, expit, gammaln, hyp2f1

Values = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class NbdParams:
    """BG/NBD or MBG/NBD: purchase rates ~ Gamma(r, alpha), drop-out ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True, slots=True)
class GammaGammaParams:
    """Spend per purchase ~ Gamma(p, nu), nu ~ Gamma(q, v) across customers."""

    p: float
    q: float
    v: float

    @property
    def population_mean(self) -> float:
        return self.p * self.v / (self.q - 1)


def _hypergeometric_tail(params: NbdParams, t: Values, T: Values, c: Values,
                         c_minus_rx: float) -> Values:
    """((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, c-a+1; c; z), computed as
    ((alpha+T)/(alpha+T+t))^(a-1) 2F1(c-r-x, a-1; c; z); ``c_minus_rx`` is c - (r+x)."""
    alpha, a = params.alpha, params.a
    shrink = (alpha + T) / (alpha + T + t)
    return shrink ** (a - 1) * _hyp2f1(np.broadcast_to(c_minus_rx, np.shape(c)), a - 1, c,
                                       t / (alpha + T + t))


def _hyp2f1(a: Values, b: float, c: Values, z: Values) -> Values:
    """scipy's 2F1, and mpmath's for the few points where scipy's overflows (z near 1 with a
    large c makes its transformation's Gamma functions overflow)."""
    values = np.asarray(hyp2f1(a, b, c, z), dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        a_, c_, z_ = (np.broadcast_to(v, values.shape)[bad] for v in (a, c, z))
        values = values.copy()
        values[bad] = [float(mpmath.hyp2f1(ai, b, ci, zi)) for ai, ci, zi in zip(a_, c_, z_,
                                                                                 strict=True)]
    return values


def _arrays(*values: ArrayLike) -> tuple[Values, ...]:
    return tuple(np.asarray(v, dtype=np.float64) for v in values)


def _log_odds_dead(params: NbdParams, x: Values, t_x: Values, T: Values, shift: float) -> Values:
    """log[ a/(b+x-shift) * ((alpha+T)/(alpha+t_x))^(r+x) ]: log odds of having dropped out."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    with np.errstate(divide="ignore"):
        return (np.log(a) - np.log(b + x - shift)
                + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x)))


# --- BG/NBD ------------------------------------------------------------------------------


def bgnbd_p_alive(params: NbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> Values:
    """P(alive | x, t_x, T) = 1 / (1 + [x>0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))."""
    x, t_x, T = _arrays(x, t_x, T)
    p = expit(-_log_odds_dead(params, x, t_x, T, shift=1.0))
    return np.where(x > 0, p, 1.0)


def bgnbd_expected_purchases(
    params: NbdParams, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> Values:
    """E[Y(t) | x, t_x, T]: expected purchases in the next ``t`` days (needs a > 1)."""
    t, x, t_x, T = _arrays(t, x, t_x, T)
    r, a, b = params.r, params.a, params.b
    tail = _hypergeometric_tail(params, t, T, a + b + x - 1, a + b - r - 1)
    alive = bgnbd_p_alive(params, x, t_x, T)
    return (a + b + x - 1) / (a - 1) * (1 - tail) * alive


def bgnbd_log_likelihood(
    params: NbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> Values:
    """Per-customer log-likelihood of (x, t_x, T) under BG/NBD."""
    x, t_x, T = _arrays(x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    still_alive = betaln(a, b + x) - betaln(a, b) - (r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        gone_after_last = np.where(
            x > 0,
            betaln(a + 1, b + np.maximum(x, 1) - 1) - betaln(a, b)
            - (r + x) * np.log(alpha + t_x),
            -np.inf,
        )
    return common + np.logaddexp(still_alive, gone_after_last)


# --- MBG/NBD -----------------------------------------------------------------------------


def mbgnbd_p_alive(params: NbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> Values:
    """P(alive | x, t_x, T) = 1 / (1 + a/(b+x) ((alpha+T)/(alpha+t_x))^(r+x)), for every x."""
    x, t_x, T = _arrays(x, t_x, T)
    return expit(-_log_odds_dead(params, x, t_x, T, shift=0.0))


def mbgnbd_expected_purchases(
    params: NbdParams, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> Values:
    """E[Y(t) | x, t_x, T] under MBG/NBD (needs a > 1)."""
    t, x, t_x, T = _arrays(t, x, t_x, T)
    r, a, b = params.r, params.a, params.b
    tail = _hypergeometric_tail(params, t, T, a + b + x, a + b - r)
    alive = mbgnbd_p_alive(params, x, t_x, T)
    return (a + b + x) / (a - 1) * (1 - tail) * alive


def mbgnbd_log_likelihood(
    params: NbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> Values:
    """Per-customer log-likelihood of (x, t_x, T) under MBG/NBD."""
    x, t_x, T = _arrays(x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    return (
        gammaln(r + x) - gammaln(r) + r * np.log(alpha)
        + betaln(a, b + x + 1) - betaln(a, b)
        - (r + x) * np.log(alpha + T)
        + np.logaddexp(0.0, _log_odds_dead(params, x, t_x, T, shift=0.0))
    )


# --- Gamma-Gamma ---------------------------------------------------------------------------


def gamma_gamma_expected_value(
    params: GammaGammaParams, x: float | Values, m: float | Values
) -> float | Values:
    """E[M | x, m] = p (v + x m) / (p x + q - 1): shrinks the observed mean spend ``m`` of
    ``x`` repeat purchases towards the population mean (all of it when x = 0). Takes numbers
    or arrays (a live prediction is one customer: no array needed)."""
    p, q, v = params.p, params.q, params.v
    return p * (v + x * m) / (p * x + q - 1)


def gamma_gamma_log_likelihood(
    params: GammaGammaParams, x: ArrayLike, m: ArrayLike
) -> Values:
    """Per-customer log-likelihood of the mean spend ``m`` over ``x`` > 0 purchases."""
    x, m = _arrays(x, m)
    p, q, v = params.p, params.q, params.v
    px = p * x
    return (
        gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v)
        + (px - 1) * np.log(m) + px * np.log(x) - (px + q) * np.log(x * m + v)
    )
