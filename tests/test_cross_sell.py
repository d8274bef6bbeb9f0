"""Cross-sell: the co-purchase model, recommendations, and the ``cross_sell`` follow-up.

The model's arithmetic and the follow-up rule are checked on the pure domain; the whole path
(each order's co-purchases on the internal topic, every worker's model, the profile's
``recommended_products``) against a real broker, on orders with planted structure.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from harness.kafka import Record, event, produce
from streams.domain.copurchase import CoPurchase, CoPurchaseModel, co_purchase
from streams.domain.followups import FollowUpRules, fire, plan
from streams.domain.state import CustomerState, Order

DAY0 = datetime(2026, 1, 5, tzinfo=UTC)


def at(day: float) -> datetime:
    return DAY0 + timedelta(days=day)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def placed(state: CustomerState, order_id: str, day: float, *skus: str) -> CoPurchase | None:
    order = Order(placed_at=at(day), currency="USD", fx_rate=Decimal(1), revenue=Decimal(10),
                  discount=Decimal(0), cost=Decimal(7), lines_at=at(day), skus=sorted(skus))
    state.orders[order_id] = order
    return co_purchase(state, order_id, order)


def test_each_customer_counts_a_pair_once_within_the_window() -> None:
    state = CustomerState("c")
    assert placed(state, "o1", 0, "a", "b") == CoPurchase(("a", "b"), (("a", "b"),))
    # c arrives 10 days later: it pairs with a and b; b is bought again, nothing new
    assert placed(state, "o2", 10, "b", "c") == CoPurchase(("c",), (("a", "c"), ("b", "c")))
    assert placed(state, "o3", 20, "a", "c") is None
    # 200 days on, the earlier orders are outside the window: a starts a new basket, with
    # no partner in it yet and no new buyer; d pairs with a
    assert placed(state, "o4", 200, "a", "d") == CoPurchase(("d",), (("a", "d"),))
    state.orders["o3"].cancelled = True  # a cancelled order takes part in nothing:
    # e on day 5 pairs with o1 (a, b) and o2 (b, c), not with o3 (a, c) nor o4 (day 200)
    assert placed(state, "o5", 5, "e") == CoPurchase(
        ("e",), (("a", "e"), ("b", "e"), ("c", "e")))
    state.orders["o1"].cancelled = True
    assert placed(state, "o6", 6, "f") == CoPurchase(("f",), (("b", "f"), ("c", "f"),
                                                              ("e", "f")))


def test_scores_are_summed_cosine_similarities() -> None:
    model = CoPurchaseModel()
    model.add(CoPurchase(("a", "b", "p"), (("a", "b"), ("a", "p"), ("b", "p"))))
    model.add(CoPurchase(("a", "b", "p"), (("a", "b"), ("a", "p"), ("b", "p"))))
    for _ in range(8):  # p is bought by everybody, mostly alone
        model.add(CoPurchase(("p",), ()))
    model.add(CoPurchase(("c",), (("a", "c"),)))
    # bought a: b = 2 / sqrt(2 x 2) = 1; p = 2 / sqrt(2 x 10) = 0.4472; c = 1 / sqrt(2 x 1)
    assert model.recommend({"a"}) == [("b", 1.0), ("c", 0.7071), ("p", 0.4472)]
    # bought a and b: p = 0.4472 + 2 / sqrt(2 x 10); c = 0.7071 (b never with c)
    assert model.recommend({"a", "b"}) == [("p", round(2 * 2 / math.sqrt(20), 4)),
                                           ("c", 0.7071)]
    assert model.recommend({"a"}, top=1) == [("b", 1.0)]
    assert model.recommend({"unknown"}) == []


def test_cross_sell_falls_due_after_an_order_when_a_recommendation_scores_enough() -> None:
    from streams.domain.followups import ValueFacts

    rules = FollowUpRules()
    state = CustomerState("c", recommended=[("b", 0.6), ("p", 0.1)])
    order = Order(placed_at=at(0), currency="USD", fx_rate=Decimal(1), revenue=Decimal(10),
                  discount=Decimal(0), cost=Decimal(7), lines_at=at(0), skus=["a"])
    state.orders["o1"] = order
    facts = ValueFacts(live=[order], history=None, clv=None, currency="USD", tier=None,
                       platinum_cut=300.0, became_high_risk=False, churn=None)
    plan(state, at(0), facts, rules)
    assert state.followups["cross_sell"].due_at == at(14)
    emitted, _ = fire(state, at(14), at(14), facts, rules)
    cross_sell = [f for f in emitted if f.reason == "cross_sell"]
    assert [f.context["products"] for f in cross_sell] == [[{"sku": "b", "score": 0.6}]]
    # below the threshold: made pending, but dropped when due
    state = CustomerState("d", recommended=[("p", 0.2)])
    state.orders["o1"] = order
    plan(state, at(0), facts, rules)
    emitted, dropped = fire(state, at(14), at(14), facts, rules)
    assert not [f for f in emitted if f.reason == "cross_sell"]
    assert ("cross_sell", "condition") in {(d.reason, d.cause) for d in dropped}


def test_cross_sell_moves_no_other_follow_up() -> None:
    """It neither waits for the cap nor counts in it, and is pending after every order
    whatever its cool-down (which it meets when due): the model it depends on cannot change
    any other follow-up or the customer's decision times."""
    from streams.domain.followups import ValueFacts

    rules = FollowUpRules()
    first = Order(placed_at=at(0), currency="USD", fx_rate=Decimal(1), revenue=Decimal(10),
                  discount=Decimal(0), cost=Decimal(7), lines_at=at(0), skus=["a"])
    state = CustomerState("c", recommended=[("b", 0.6)], orders={"o1": first},
                          followup_times=[at(13), at(13.5)])  # the cap is full
    facts = ValueFacts(live=[first], history=None, clv=None, currency="USD", tier=None,
                       platinum_cut=300.0, became_high_risk=False, churn=None)
    plan(state, at(0), facts, rules)
    emitted, _ = fire(state, at(14), at(14), facts, rules)
    assert [f.reason for f in emitted] == ["cross_sell"]
    assert state.followup_times == [at(13), at(13.5)]  # not counted in the cap
    second = Order(placed_at=at(20), currency="USD", fx_rate=Decimal(1), revenue=Decimal(10),
                   discount=Decimal(0), cost=Decimal(7), lines_at=at(20), skus=["c"])
    state.orders["o2"] = second
    facts = ValueFacts(live=[first, second], history=None, clv=None, currency="USD",
                       tier=None, platinum_cut=300.0, became_high_risk=False, churn=None)
    plan(state, at(20), facts, rules)
    assert state.followups["cross_sell"].due_at == at(34)  # pending in its cool-down ...
    emitted, dropped = fire(state, at(34), at(34), facts, rules)
    assert not emitted and [(d.reason, d.cause) for d in dropped] == [("cross_sell",
                                                                      "cool_down")]


# --- planted structure, against a real broker ---------------------------------------------

GROUPS = [[f"g{g}-{n}" for n in range(4)] for g in range(8)]  # bought together
POPULAR = [f"pop-{n}" for n in range(4)]  # bought by many, with anything


class Shop:
    """Customers who each like one group of SKUs, and buy popular SKUs now and then."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.count = 0

    def basket(self, group: list[str], size: int) -> list[str]:
        skus = self.random.sample(group, size)
        if self.random.random() < 0.6:
            skus.append(self.random.choice(POPULAR))
        return skus

    def order(self, customer: str, day: float, skus: list[str]) -> Record:
        self.count += 1
        return event("order.placed", f"{customer}-{self.count}", customer, iso(at(day)),
                     order_id=f"{customer}-{self.count}", currency="USD",
                     lines=[{"sku": sku, "quantity": 1, "unit_price": "10.00"}
                            for sku in skus])


def precision_at_5(recommended: list[list[str]], next_orders: list[set[str]]) -> float:
    hits = sum(len(set(recs[:5]) & bought) for recs, bought in zip(recommended, next_orders,
                                                                       strict=True))
    return hits / (5 * len(recommended))


@pytest.mark.kafka
def test_recommendations_beat_popularity_and_follow_new_orders(
        kafka_bootstrap: str, namespace: str, make_worker: Any) -> None:
    shop = Shop(seed=11)
    history: list[Record] = []
    bought: Counter[str] = Counter()  # customers per SKU: the popularity baseline
    for n in range(300):  # training customers: three orders each, a few days apart
        group = GROUPS[n % len(GROUPS)]
        mine: set[str] = set()
        for k in range(3):
            skus = shop.basket(group, 2)
            mine.update(skus)
            history.append(shop.order(f"train{n}", n / 10 + 5 * k, skus))
        bought.update(mine)
    held_out: dict[str, tuple[set[str], set[str]]] = {}  # customer -> (first, next order)
    for n in range(48):
        group = GROUPS[n % len(GROUPS)]
        first = set(shop.basket(group, 2))
        rest = [sku for sku in group if sku not in first]
        following = set(shop.random.sample(rest, 2))
        if shop.random.random() < 0.6:
            following.add(shop.random.choice(POPULAR))
        held_out[f"held{n}"] = (first, following - first)
    worker = make_worker(VALUESTREAM_CLOCK="event")
    prefix = f"{namespace}-"
    produce(kafka_bootstrap, prefix, history)
    worker.wait_settled(120)
    # The held-out customers' first orders, once the model has learnt from the others.
    worker.wait(lambda: learned(worker), 60, "the model to learn every co-purchase")
    produce(kafka_bootstrap, prefix, [shop.order(c, 40, sorted(first))
                                      for c, (first, _) in held_out.items()])
    worker.wait_settled(60)
    recommended, popular, next_orders = [], [], []
    for customer, (first, following) in held_out.items():
        status, profile = worker.profile(customer)
        assert status == 200
        recommended.append([r["sku"] for r in profile["recommended_products"]])
        popular.append([sku for sku, _ in sorted(bought.items(), key=lambda i: (-i[1], i[0]))
                        if sku not in first][:5])
        next_orders.append(following)
    model, baseline = precision_at_5(recommended, next_orders), precision_at_5(popular,
                                                                              next_orders)
    assert model >= 2 * baseline, (model, baseline)

    # A pair nobody has bought yet: the model learns it from new orders within a minute.
    started = time.monotonic()
    produce(kafka_bootstrap, prefix, [shop.order(f"new{n}", 50, ["x-1", "x-2"])
                                      for n in range(5)])
    probe = 0

    def probe_recommends() -> bool:
        nonlocal probe
        probe += 1
        produce(kafka_bootstrap, prefix, [shop.order("probe", 50 + probe, ["x-1"])])
        status, profile = worker.profile("probe")
        return status == 200 and "x-2" in [r["sku"] for r in profile["recommended_products"]]

    worker.wait(probe_recommends, 60, "a new pair in the recommendations", interval=1.0)
    assert time.monotonic() - started < 60


def learned(worker: Any) -> bool:
    """Has the worker's model taken in every co-purchase record it wrote?"""
    written = worker.metric("valuestream_emitted_total", kind="co_purchase")
    return written > 0 and worker.metric("valuestream_co_purchases_learned_total") == written
