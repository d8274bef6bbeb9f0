"""Customers who bring customers: who referred whom, and what the referred bring.

* **Referral.** ``customer.referred`` (on ``orders``, keyed by the referred customer) or
  ``order.placed`` with ``referred_by`` names a customer's referrer. The first referrer
  wins. A customer cannot refer themselves (``self_referral``), nor be referred by one of
  the customers they brought, directly or through others (``referral_cycle``); a second,
  different referrer is ``already_referred``. On ``customer.referred`` these are dead
  letters; on an ``order.placed`` the order is applied and only its ``referred_by`` is
  ignored (counted in ``valuestream_referrals_refused_total``), so that no order is lost.
* **Contribution.** A referred customer's partition sends, whenever it changes, what the
  customer contributes to the referrer: net revenue, current predicted CLV, whether they
  have bought, when they first ordered, and the customers they brought in turn (so that a
  cycle can be seen). It goes to the referrer's partition through an internal topic keyed
  by the referrer (``referral.updated``): no partition reads another's state. Each update
  carries the whole current contribution (not a difference), and the referrer keeps the
  latest by time, so a repeat after a crash changes nothing.
* **Erasure.** An erased referred customer sends a last update that removes them from the
  referrer: the referrer's totals are then those of the remaining referrals, as if the
  erased customer had never been referred. An erased referrer's referred customers keep
  their own profiles; their later updates are ignored by the referrer's erasure marker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from schemas.events import ReferralUpdated
from streams.domain.models import ModelParams
from streams.domain.predict import value_tier
from streams.domain.state import ZERO, CustomerState, Order, Referred

MAX_DESCENDANTS = 1_000  # customers brought, directly or not, known per customer (cycles)


@dataclass(frozen=True, slots=True)
class Contribution:
    """What a referred customer sends to the referrer (``erased``: remove me)."""

    referrer: str
    referred: str
    referred_at: datetime  # when the referral was recorded
    at: datetime
    net_revenue: Decimal
    clv: Decimal | None
    first_order_at: datetime | None
    descendants: tuple[str, ...]
    erased: bool = False

    @property
    def key(self) -> tuple[object, ...]:
        """What the referrer's totals depend on (a change of time alone sends nothing)."""
        return (self.referrer, self.net_revenue, self.clv, self.first_order_at,
                self.descendants, self.erased)


def descendants(state: CustomerState) -> set[str]:
    """The customers this one brought, directly or through others (at most
    ``MAX_DESCENDANTS``)."""
    found: set[str] = set()
    for customer, referred in sorted(state.referrals.items()):
        found.add(customer)
        found.update(referred.descendants)
        if len(found) >= MAX_DESCENDANTS:
            break
    return found


def refusal(state: CustomerState, referrer: str) -> tuple[str, str] | None:
    """Why ``referrer`` cannot be the customer's referrer (code, message); ``None``: it can
    (or already is)."""
    customer = state.customer_id
    if referrer == customer:
        return "self_referral", f"customer {customer!r} cannot refer themselves"
    if state.referred_by is not None and state.referred_by != referrer:
        return "already_referred", (f"customer {customer!r} was referred by "
                                    f"{state.referred_by!r} first")
    if referrer in descendants(state):
        return "referral_cycle", (f"{referrer!r} was brought by {customer!r}: a referral "
                                  "cycle")
    return None


def contribution(state: CustomerState, live: list[Order], clv: Decimal | None,
                 at: datetime) -> Contribution | None:
    """What the customer now contributes to their referrer (``None``: no referrer)."""
    if state.referred_by is None or state.referred_at is None:
        return None
    return Contribution(
        referrer=state.referred_by, referred=state.customer_id,
        referred_at=state.referred_at, at=at,
        net_revenue=sum((o.revenue - o.refunded for o in live), ZERO), clv=clv,
        first_order_at=live[0].placed_at if live else None,
        descendants=tuple(sorted(descendants(state))))


def take(state: CustomerState, update: ReferralUpdated) -> tuple[Referred | None, bool]:
    """Apply a referred customer's update to the referrer's state (latest by time wins).
    Returns the contribution it replaced, and whether it took effect."""
    before = state.referrals.get(update.referred)
    if before is not None and update.occurred_at < before.at:
        return before, False  # an older update arriving late
    if update.erased:
        state.referrals.pop(update.referred, None)
    else:
        state.referrals[update.referred] = Referred(
            at=update.occurred_at, net_revenue=update.net_revenue, clv=update.clv,
            first_order_at=update.first_order_at, descendants=list(update.descendants))
    return before, True


def relationship_tier(clv: float | None, referred_clv: Decimal, has_referrals: bool,
                      params: ModelParams) -> str | None:
    """The value tier of the relationship value: own predicted CLV plus the referred
    customers' (``None`` before a first purchase, unless the customer brought others)."""
    if clv is None and not has_referrals:
        return None
    return value_tier((clv or 0.0) + float(referred_clv), params)


@dataclass(frozen=True, slots=True)
class ReferralTotals:
    referrals: int
    referred_buyers: int
    referred_net_revenue: Decimal
    referred_clv: Decimal


def totals(state: CustomerState) -> ReferralTotals:
    referred = state.referrals.values()
    return ReferralTotals(
        referrals=len(state.referrals),
        referred_buyers=sum(1 for r in referred if r.first_order_at is not None),
        referred_net_revenue=sum((r.net_revenue for r in referred), ZERO),
        referred_clv=sum((r.clv for r in referred if r.clv is not None), ZERO))
