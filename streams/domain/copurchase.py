"""What customers buy together: a live item-to-item co-purchase model, and recommendations.

* **Co-purchase.** A customer *co-purchases* two SKUs when both are in their live orders
  placed within ``WINDOW`` (90 days) of each other. When an order is placed, its SKUs that
  the customer's other live orders of that window do not hold yet pair with those that
  they do, and with each other (``co_purchase``): each customer counts once per pair, when
  the second SKU arrives. A SKU's *buyers* are the customers who bought it (each once, at
  their first purchase of it). Cancellations and amendments later do not take a pair back:
  the model is a statistic of what was bought, not an account.
* **Score.** For a customer who bought the SKUs B, a SKU c they have not bought scores
  ``sum over a in B of co(a, c) / sqrt(buyers(a) * buyers(c))``: the cosine similarity of
  the two SKUs' sets of buyers, summed over what the customer bought. Dividing by
  ``sqrt(buyers(c))`` damps popularity: a SKU that everyone buys is bought with everything,
  but is no more likely with one SKU than with any other.
* **Recommended products**: the ``TOP`` (5) highest scores, ties by SKU, rounded to 4
  decimals.

The model is kept per worker from the co-purchase records every worker reads (see the
README, *Cross-sell*); a customer's recommendations are worked out when the customer's
state changes and kept with it, so that a profile is a function of the state alone.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from streams.domain.state import CustomerState, Order

WINDOW = timedelta(days=90)
TOP = 5


@dataclass(frozen=True, slots=True)
class CoPurchase:
    """What one order adds to the model."""

    new_buyers: tuple[str, ...]  # SKUs the customer bought for the first time
    pairs: tuple[tuple[str, str], ...]  # (a, b) with a < b, each co-purchased now


def co_purchase(state: CustomerState, order_id: str, order: Order) -> CoPurchase | None:
    """The pairs and buyers an order placed now adds (``None``: nothing new)."""
    earlier: set[str] = set()
    window: set[str] = set()
    for other_id, other in state.orders.items():
        if other_id == order_id or other.cancelled:
            continue
        earlier.update(other.skus)
        if abs(other.placed_at - order.placed_at) <= WINDOW:
            window.update(other.skus)
    arriving = sorted(set(order.skus) - window)
    pairs = {tuple(sorted((new, old))) for new in arriving for old in window}
    pairs |= {(a, b) for i, a in enumerate(arriving) for b in arriving[i + 1:]}
    new_buyers = tuple(sku for sku in arriving if sku not in earlier)
    if not pairs and not new_buyers:
        return None
    return CoPurchase(new_buyers, tuple(sorted(pairs)))  # type: ignore[arg-type]


@dataclass
class CoPurchaseModel:
    """Buyers per SKU and co-purchases per pair of SKUs, both ways."""

    buyers: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    together: dict[str, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    updated_at: datetime | None = None  # of the latest record taken in (processor time)

    def add(self, change: CoPurchase) -> None:
        for sku in change.new_buyers:
            self.buyers[sku] += 1
        for a, b in change.pairs:
            self.together[a][b] += 1
            self.together[b][a] += 1

    def recommend(self, bought: Iterable[str], top: int = TOP) -> list[tuple[str, float]]:
        """The SKUs not in ``bought`` with the highest scores (see the module doc)."""
        owned = set(bought)
        scores: dict[str, float] = defaultdict(float)
        for a in owned:
            buyers_a = self.buyers.get(a, 0)
            if not buyers_a:
                continue
            for c, count in self.together.get(a, {}).items():
                buyers_c = self.buyers.get(c, 0)
                if c not in owned and buyers_c:
                    scores[c] += count / math.sqrt(buyers_a * buyers_c)
        ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:top]
        return [(sku, round(score, 4)) for sku, score in ranked]


def bought_skus(state: CustomerState) -> set[str]:
    return {sku for order in state.orders.values() if not order.cancelled for sku in order.skus}
