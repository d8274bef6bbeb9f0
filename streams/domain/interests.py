"""What a customer likes: categories and brands by recent spend, and their subscriptions.

An interest is a kind and a value, written ``"category:Books"`` or ``"brand:Acme"``.

* **Spend score.** Each live order's current lines add their revenue (in the base currency,
  less the order's refunded share) to their category and to their brand, weighted by
  ``0.5 ** (age / half_life)``: a purchase counts half after ``half_life`` (90 days), a
  quarter after twice that. The profile ranks the top categories and brands by this score.
* **Favourite.** A customer *clearly favours* an interest when it holds at least
  ``favourite_share`` (40%) of the customer's decayed spend of its kind (all categories, or
  all brands) and was bought in at least ``favourite_orders`` (2) different orders. Because
  every purchase decays at the same rate, the shares do not change with time alone, only
  with orders: the favourites are a function of the orders, so an index of them is exact.
* **Subscriptions.** ``interest.subscribed`` / ``interest.unsubscribed``; the latest by
  ``occurred_at`` wins.

A product published in an interest that the customer subscribes to or favours, whose SKU
the customer has not bought, is *new in a favourite* (``matches``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from schemas.events import InterestChanged, ProductPublished
from streams.domain.state import ZERO, CustomerState, Order, Subscription

KINDS = ("category", "brand")


@dataclass(frozen=True, slots=True)
class InterestRules:
    half_life: timedelta = timedelta(days=90)
    favourite_share: Decimal = Decimal("0.4")
    favourite_orders: int = 2
    top: int = 5  # interests of each kind in the profile


@dataclass(frozen=True, slots=True)
class Interest:
    kind: str
    value: str
    score: Decimal  # decayed net spend at the moment asked, base currency
    share: Decimal  # of the customer's decayed spend of this kind
    favourite: bool


def key(kind: str, value: str) -> str:
    return f"{kind}:{value}"


def split(interest: str) -> tuple[str, str]:
    kind, _, value = interest.partition(":")
    return kind, value


def line_spend(category: str | None, brand: str | None, revenue: Decimal,
               into: dict[str, Decimal]) -> None:
    """Add one order line's revenue to its interests."""
    if category is not None:
        into[key("category", category)] = into.get(key("category", category), ZERO) + revenue
    if brand is not None:
        into[key("brand", brand)] = into.get(key("brand", brand), ZERO) + revenue


def subscribe(state: CustomerState, event: InterestChanged) -> None:
    """Latest change wins, whatever the arrival order."""
    name = key(event.kind, event.value)
    current = state.subscriptions.get(name)
    if current is None or event.occurred_at >= current.at:
        state.subscriptions[name] = Subscription(event.type == "interest.subscribed",
                                                 event.occurred_at)


def subscribed(state: CustomerState) -> list[tuple[str, datetime]]:
    """Active subscriptions and since when, oldest first."""
    return sorted(((name, s.at) for name, s in state.subscriptions.items() if s.active),
                  key=lambda item: (item[1], item[0]))


def ranked(live: list[Order], as_of: datetime, rules: InterestRules) -> list[Interest]:
    """Every interest of the live orders, highest score first within each kind."""
    scores: dict[str, Decimal] = {}
    orders: dict[str, int] = {}
    for order in live:
        if not order.spend or not order.revenue:
            continue
        age = max((as_of - order.placed_at) / rules.half_life, 0.0)
        weight = Decimal(0.5 ** age) * (order.revenue - order.refunded) / order.revenue
        for name, revenue in order.spend.items():
            scores[name] = scores.get(name, ZERO) + revenue * weight
            orders[name] = orders.get(name, 0) + 1
    if not scores:
        return []
    totals = dict.fromkeys(KINDS, ZERO)
    for name, score in scores.items():
        totals[split(name)[0]] += score
    found = []
    for name, score in scores.items():
        kind, value = split(name)
        share = score / totals[kind] if totals[kind] > 0 else ZERO
        found.append(Interest(kind, value, score, share,
                              share >= rules.favourite_share
                              and orders[name] >= rules.favourite_orders))
    found.sort(key=lambda i: (KINDS.index(i.kind), -i.score, i.value))
    return found


def favourites(live: list[Order], rules: InterestRules) -> set[str]:
    """The interests the customer clearly favours (independent of the moment)."""
    if not any(order.spend for order in live):
        return set()
    latest = max(order.placed_at for order in live)
    return {key(i.kind, i.value) for i in ranked(live, latest, rules) if i.favourite}


def index_keys(state: CustomerState, live: list[Order], rules: InterestRules) -> list[str]:
    """The interests a published product may match the customer by: subscriptions and
    favourites, sorted (``CustomerState.indexed``, what the partition's interest index
    lists the customer under)."""
    active = {name for name, s in state.subscriptions.items() if s.active}
    return sorted(active | favourites(live, rules))


def bought(state: CustomerState, sku: str) -> bool:
    """Is the SKU in a live order's current lines?"""
    return any(sku in order.skus for order in state.orders.values() if not order.cancelled)


def product_keys(product: ProductPublished | dict[str, str]) -> list[str]:
    """The interests a product belongs to."""
    get = product.get if isinstance(product, dict) else lambda field: getattr(product, field)
    return [key(kind, value) for kind in KINDS if (value := get(kind)) is not None]


def matches(state: CustomerState, product: ProductPublished | dict[str, str]
            ) -> list[tuple[str, str]]:
    """Why a product is new in one of the customer's favourites: (interest, "subscribed" or
    "favourite") for each of its interests the customer is indexed under (``indexed``, kept
    current by ``apply_event``); empty if none, or if the customer bought the SKU already."""
    found = [name for name in product_keys(product) if name in state.indexed]
    if not found or bought(state, product["sku"] if isinstance(product, dict) else product.sku):
        return []
    return [(name, "subscribed" if (s := state.subscriptions.get(name)) is not None and s.active
             else "favourite") for name in found]
