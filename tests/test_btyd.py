"""The BTYD formulas against the published closed forms, evaluated independently with
mpmath at 30 significant digits, straight from the papers (no Pfaff transformation)."""

from __future__ import annotations

from itertools import pairwise

import mpmath as mp
import pytest

from streams.domain.btyd import (
    GammaGammaParams,
    NbdParams,
    bgnbd_expected_purchases,
    bgnbd_log_likelihood,
    bgnbd_p_alive,
    gamma_gamma_expected_value,
    gamma_gamma_log_likelihood,
    mbgnbd_expected_purchases,
    mbgnbd_log_likelihood,
    mbgnbd_p_alive,
)

mp.mp.dps = 30
NBD = NbdParams(r=0.243, alpha=4.414 * 7, a=0.793, b=2.426)  # CDNOW, rescaled to days
NBD_HEAVY = NbdParams(r=1.7, alpha=12.0, a=2.3, b=4.1)
TINY_ALPHA = NbdParams(r=0.203, alpha=1.102, a=0.006479, b=234.4)  # seen in a real fit
GG = GammaGammaParams(p=6.25, q=3.74, v=15.44)
# (params, x, t_x, T): frequency 0, small, above 100, recency = age, several years of age
CASES = [
    (NBD, 0, 0, 30), (NBD, 0, 0, 2000), (NBD, 1, 10, 40), (NBD, 4, 200, 200),
    (NBD, 7, 300, 380), (NBD, 150, 700, 730), (NBD, 400, 1800, 2200), (NBD_HEAVY, 2, 5, 1500),
    (NBD_HEAVY, 120, 1460, 1460), (NBD_HEAVY, 30, 100, 2500),
    (TINY_ALPHA, 0, 0, 0), (TINY_ALPHA, 1, 1, 1), (TINY_ALPHA, 0, 0, 1),
]
HORIZONS = [7, 90, 365, 1000]


def close(actual: float, expected: mp.mpf) -> bool:
    """Relative error at most 1e-6 (absolute 1e-12 for values that are 0 in theory)."""
    return abs(mp.mpf(actual) - expected) <= 1e-6 * abs(expected) + mp.mpf(1e-12)


def bg_p_alive(p: NbdParams, x: int, t_x: float, T: float) -> mp.mpf:
    if x == 0:
        return mp.mpf(1)
    r, alpha, a, b = map(mp.mpf, (p.r, p.alpha, p.a, p.b))
    return 1 / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))


def bg_expected(p: NbdParams, t: float, x: int, t_x: float, T: float) -> mp.mpf:
    r, alpha, a, b = map(mp.mpf, (p.r, p.alpha, p.a, p.b))
    z = t / (alpha + T + t)
    body = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * mp.hyp2f1(r + x, b + x,
                                                                      a + b + x - 1, z)
    return (a + b + x - 1) / (a - 1) * body * bg_p_alive(p, x, t_x, T)


def bg_ll(p: NbdParams, x: int, t_x: float, T: float) -> mp.mpf:
    r, alpha, a, b = map(mp.mpf, (p.r, p.alpha, p.a, p.b))
    front = mp.gamma(r + x) * alpha ** r / mp.gamma(r)
    first = mp.beta(a, b + x) / mp.beta(a, b) / (alpha + T) ** (r + x)
    second = (mp.beta(a + 1, b + x - 1) / mp.beta(a, b) / (alpha + t_x) ** (r + x)
              if x > 0 else 0)
    return mp.log(front * (first + second))


def mbg_p_alive(p: NbdParams, x: int, t_x: float, T: float) -> mp.mpf:
    r, alpha, a, b = map(mp.mpf, (p.r, p.alpha, p.a, p.b))
    return 1 / (1 + a / (b + x) * ((alpha + T) / (alpha + t_x)) ** (r + x))


def mbg_expected(p: NbdParams, t: float, x: int, t_x: float, T: float) -> mp.mpf:
    r, alpha, a, b = map(mp.mpf, (p.r, p.alpha, p.a, p.b))
    z = t / (alpha + T + t)
    body = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * mp.hyp2f1(r + x, b + x + 1,
                                                                      a + b + x, z)
    return (a + b + x) / (a - 1) * body * mbg_p_alive(p, x, t_x, T)


def mbg_ll(p: NbdParams, x: int, t_x: float, T: float) -> mp.mpf:
    r, alpha, a, b = map(mp.mpf, (p.r, p.alpha, p.a, p.b))
    front = mp.gamma(r + x) * alpha ** r / mp.gamma(r)
    return mp.log(front * mp.beta(a, b + x + 1) / mp.beta(a, b) / (alpha + T) ** (r + x)
                  * (1 + a / (b + x) * ((alpha + T) / (alpha + t_x)) ** (r + x)))


@pytest.mark.parametrize(("params", "x", "t_x", "T"), CASES)
def test_bgnbd(params: NbdParams, x: int, t_x: float, T: float) -> None:
    assert close(float(bgnbd_p_alive(params, x, t_x, T)), bg_p_alive(params, x, t_x, T))
    assert close(float(bgnbd_log_likelihood(params, x, t_x, T)), bg_ll(params, x, t_x, T))
    for t in HORIZONS:
        assert close(float(bgnbd_expected_purchases(params, t, x, t_x, T)),
                     bg_expected(params, t, x, t_x, T))


@pytest.mark.parametrize(("params", "x", "t_x", "T"), CASES)
def test_mbgnbd(params: NbdParams, x: int, t_x: float, T: float) -> None:
    assert close(float(mbgnbd_p_alive(params, x, t_x, T)), mbg_p_alive(params, x, t_x, T))
    assert close(float(mbgnbd_log_likelihood(params, x, t_x, T)), mbg_ll(params, x, t_x, T))
    for t in HORIZONS:
        assert close(float(mbgnbd_expected_purchases(params, t, x, t_x, T)),
                     mbg_expected(params, t, x, t_x, T))


@pytest.mark.parametrize(("x", "m"), [(0, 0.0), (1, 12.5), (3, 40.0), (150, 22.75),
                                      (1000, 9.99), (2, 0.01), (25, 500.0), (7, 35.5)])
def test_gamma_gamma(x: int, m: float) -> None:
    p, q, v = map(mp.mpf, (GG.p, GG.q, GG.v))
    expected = p * (v + x * mp.mpf(m)) / (p * x + q - 1)
    assert close(float(gamma_gamma_expected_value(GG, x, m)), expected)
    if x > 0:
        mm = mp.mpf(m)
        ll = mp.log(mp.gamma(p * x + q) / (mp.gamma(p * x) * mp.gamma(q)) * v ** q
                    * mm ** (p * x - 1) * mp.mpf(x) ** (p * x) / (v + x * mm) ** (p * x + q))
        assert close(float(gamma_gamma_log_likelihood(GG, x, m)), ll)


def test_one_time_buyers_fade_only_under_mbgnbd() -> None:
    assert bgnbd_p_alive(NBD, 0, 0, 3000) == 1.0
    ages = [0, 30, 365, 3000, 30000]
    alive = [float(mbgnbd_p_alive(NBD, 0, 0, T)) for T in ages]
    assert all(later < earlier for earlier, later in pairwise(alive))
    assert alive[-1] < 0.4
