"""Money at the edge: every amount is exact (``Decimal``) until an output shows it, rounded
half-up to cents and written as decimal text with two decimals, in the base currency that
every output names (README, *Money*)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal

CENT = Decimal("0.01")
WIDE = Context(prec=400)  # room for any finite float: rounding to cents never overflows


def cents(amount: Decimal) -> Decimal:
    """Round half-up to cents (never a negative zero)."""
    rounded = amount.quantize(CENT, rounding=ROUND_HALF_UP, context=WIDE)
    return rounded.copy_abs() if rounded.is_zero() else rounded


def money(amount: Decimal) -> str:
    """An amount as outputs show it: "1234.50" (the same rounding as ``cents``, formatted
    directly: this runs a dozen times per snapshot)."""
    text = f"{amount.quantize(CENT, ROUND_HALF_UP, WIDE):f}"
    return "0.00" if text == "-0.00" else text
