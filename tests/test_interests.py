"""Interests: what customers like, and ``new_in_favourite`` when a product arrives in it.

The ranking and the follow-up rules are checked on the pure step; the whole path (the
catalog topic read by every partition, the partition's interest index, the customer's step)
against a real broker and worker.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import msgspec
import orjson
import pytest

from harness.kafka import Record, event, produce, read_topic
from schemas.events import TOPICS, ProductPublished, adapter_for
from streams.domain.interests import index_keys
from streams.domain.models import DEFAULT_PARAMS
from streams.domain.predict import Predictor
from streams.domain.profile import build_profile
from streams.domain.rules import Rules
from streams.domain.state import CustomerState, Source
from streams.domain.step import Clock, Incoming, StepResult, step

DAY0 = datetime(2026, 6, 1, tzinfo=UTC)
RULES = Rules(currency="USD", fx_rates={"USD": Decimal(1)}, default_margin=Decimal("0.3"),
              ticket_cost=Decimal("2.5"), dedup_window=timedelta(days=35),
              orphan_ttl=timedelta(days=7), max_parked=100, max_parked_bytes=1_000_000)
PREDICTOR = Predictor(DEFAULT_PARAMS)
_ADAPTERS = {schema.topic: adapter_for(schema) for schema in TOPICS}


def at(day: float) -> datetime:
    return DAY0 + timedelta(days=day)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def line(sku: str, price: str, category: str | None = None, brand: str | None = None
         ) -> dict[str, Any]:
    found: dict[str, Any] = {"sku": sku, "quantity": 1, "unit_price": price}
    if category is not None:
        found["category"] = category
    if brand is not None:
        found["brand"] = brand
    return found


def product(event_id: str, day: float, sku: str, category: str, brand: str) -> Record:
    body = {"event_id": event_id, "type": "product.published", "occurred_at": iso(at(day)),
            "sku": sku, "title": f"{brand} {category}", "category": category, "brand": brand,
            "price": "19.90", "currency": "USD"}
    return "catalog", sku.encode(), orjson.dumps(body)


class Customer:
    """One customer's events, fed to the pure step in order."""

    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        self.state: CustomerState | None = None
        self.offset = 0
        self.follow_ups: list[Any] = []

    def feed(self, record: Record) -> StepResult:
        """One message through the customer's step, at its own time."""
        topic, _, value = record
        assert value is not None
        parsed = _ADAPTERS[topic].validate_json(value)
        self.offset += 1
        incoming = Incoming(parsed, Source(topic, 0, self.offset, None, value),
                            self.customer_id if isinstance(parsed, ProductPublished) else None)
        moment = parsed.occurred_at
        result = step(self.state, [incoming], Clock(moment, moment + timedelta(days=1), None),
                      PREDICTOR, RULES)
        self.state = result.state
        self.follow_ups += result.follow_ups
        return result

    def order(self, event_id: str, day: float, *lines: dict[str, Any]) -> None:
        self.feed(event("order.placed", event_id, self.customer_id, iso(at(day)),
                        order_id=event_id, currency="USD", lines=list(lines)))

    def subscribe(self, event_id: str, day: float, kind: str, value: str,
                  leave: bool = False) -> None:
        kind_of_change = "interest.unsubscribed" if leave else "interest.subscribed"
        self.feed(event(kind_of_change, event_id, self.customer_id, iso(at(day)), kind=kind,
                        value=value))

    def reasons(self) -> list[tuple[str, str, datetime]]:
        return [(f.reason, f.context.get("product", {}).get("sku", ""), f.due_at)
                for f in self.follow_ups]


def test_interests_rank_by_decayed_net_spend() -> None:
    """Scores at as_of = day 90 (half-life 90 days): an order of day 0 counts half."""
    ann = Customer("ann")
    ann.order("o1", 0, line("t1", "40.00", "tea", "Leaf"), line("m0", "4.00", "mugs", "Kiln"))
    ann.order("o2", 90, line("m1", "30.00", "mugs", "Kiln"), line("t2", "12.00", "tea", "Leaf"))
    ann.order("o3", 80, line("g1", "20.00", "gifts"))  # no brand; refunded by half below
    ann.feed(event("order.refunded", "r3", "ann", iso(at(85)), order_id="o3", amount="10.00"))
    ann.subscribe("s1", 10, "brand", "Hearth")
    ann.subscribe("s2", 11, "category", "gifts")
    ann.subscribe("s3", 12, "category", "gifts", leave=True)
    assert ann.state is not None
    profile = build_profile(ann.state, at(90), RULES, PREDICTOR)
    interests = orjson.loads(msgspec.json.encode(profile.interests))
    # tea 40 x 0.5 + 12 = 32.00; mugs 4 x 0.5 + 30 = 32.00 -> a tie, by name; gifts: 20 less
    # half refunded = 10 net, x 0.5 ** (10/90) = 9.2587...
    weight = Decimal(0.5 ** (10 / 90))
    gifts = Decimal(10) * weight
    total = Decimal(64) + gifts
    def shown(value: str, score: str, share: Decimal, favourite: bool) -> dict[str, Any]:
        return {"value": value, "score": score, "favourite": favourite,
                "share": float(share.quantize(Decimal("0.0001"), ROUND_HALF_UP))}

    assert interests["categories"] == [
        shown("mugs", "32.00", 32 / total, True),
        shown("tea", "32.00", 32 / total, True),
        shown("gifts", f"{gifts.quantize(Decimal('0.01'), ROUND_HALF_UP)}", gifts / total,
              False),
    ]
    # brands: Kiln 2 + 30 = 32.00 in two orders; Leaf 20 + 12 = 32.00
    assert interests["brands"] == [shown("Kiln", "32.00", Decimal("0.5"), True),
                                   shown("Leaf", "32.00", Decimal("0.5"), True)]
    assert interests["subscribed"] == [{"kind": "brand", "value": "Hearth",
                                        "since": iso(at(10))}]
    assert ann.state.indexed == ["brand:Hearth", "brand:Kiln", "brand:Leaf", "category:mugs",
                                 "category:tea"]
    assert index_keys(ann.state, [*ann.state.orders.values()], RULES.interests) == \
        ann.state.indexed


def test_a_favourite_needs_two_orders_and_a_clear_share() -> None:
    bo = Customer("bo")
    bo.order("o1", 0, line("t1", "90.00", "tea"))  # one order: not yet a favourite
    assert bo.state is not None and bo.state.indexed == []
    bo.order("o2", 1, line("t2", "5.00", "tea"), line("c1", "200.00", "cups"))
    # tea 95 of 295 = 32% < 40%: still not; cups 68% but one order
    assert bo.state.indexed == []
    bo.order("o3", 2, line("t3", "60.00", "tea"))
    assert bo.state.indexed == ["category:tea"]  # 155 of 355 = 43.7%, three orders


def test_new_in_favourite_only_when_it_matches_with_cool_down_and_cap() -> None:
    sub, fan, owner, left, other = (Customer(c) for c in ("sub", "fan", "owner", "left",
                                                          "other"))
    sub.subscribe("a1", 0, "category", "tea")
    for n in (1, 2):
        fan.order(f"b{n}", n, line(f"s{n}", "10.00", "tea", "Leaf"))
    owner.subscribe("c1", 0, "category", "tea")
    owner.order("c2", 1, line("new-1", "19.90", "tea"))  # already has the product
    left.subscribe("d1", 0, "category", "tea")
    left.subscribe("d2", 1, "category", "tea", leave=True)
    other.order("e1", 1, line("x1", "10.00", "mugs", "Kiln"))
    other.order("e2", 2, line("x2", "10.00", "mugs", "Kiln"))
    for customer in (sub, fan, owner, left, other):
        customer.feed(product("p1", 5, "new-1", "tea", "Leaf"))
    got = {c.customer_id: [r for r in c.reasons() if r[0] == "new_in_favourite"]
           for c in (sub, fan, owner, left, other)}
    assert got == {"sub": [("new_in_favourite", "new-1", at(5))],
                   "fan": [("new_in_favourite", "new-1", at(5))],
                   "owner": [], "left": [], "other": []}
    follow_up = sub.follow_ups[-1]
    assert follow_up.context["product"] == {"sku": "new-1", "title": "Leaf tea",
                                            "category": "tea", "brand": "Leaf",
                                            "currency": "USD", "price": "19.90"}
    assert follow_up.context["matched"] == [{"interest": "category:tea", "why": "subscribed"}]
    assert fan.follow_ups[-1].context["matched"] == [
        {"interest": "category:tea", "why": "favourite"},
        {"interest": "brand:Leaf", "why": "favourite"}]
    # Cool-down (30 days): a second product 10 days later is not offered; one 31 days
    # after the first is.
    sub.feed(product("p2", 15, "new-2", "tea", "Leaf"))
    sub.feed(product("p3", 36, "new-3", "tea", "Leaf"))
    assert [r for r in sub.reasons() if r[0] == "new_in_favourite"] == [
        ("new_in_favourite", "new-1", at(5)), ("new_in_favourite", "new-3", at(36))]
    # A redelivered product changes nothing.
    sub.feed(product("p3", 36, "new-3", "tea", "Leaf"))
    assert len([r for r in sub.reasons() if r[0] == "new_in_favourite"]) == 2


def test_new_in_favourite_waits_for_the_cap_and_is_dropped_if_it_no_longer_matches() -> None:
    """Cap: at most 2 follow-ups in 7 days. cap's poor rating and ticket follow-up fill it;
    the product then waits for a free slot and goes out then, unless the customer bought
    the product meanwhile."""
    def capped(name: str) -> Customer:
        customer = Customer(name)
        customer.subscribe(f"{name}1", 0, "category", "tea")
        customer.feed(event("ticket.opened", f"{name}2", name, iso(at(1)), ticket_id="t"))
        customer.feed(event("ticket.resolved", f"{name}3", name, iso(at(1.1)), ticket_id="t"))
        customer.feed(event("ticket.rated", f"{name}4", name, iso(at(1.2)), ticket_id="t",
                            csat=1))  # poor_rating_recovery at once
        customer.feed(event("email.sent", f"{name}5", name, iso(at(3.2)), message_id="m"))
        # ticket_follow_up fires at day 3.1 (2 days after resolution) on the event above
        customer.feed(product("p1", 4, "new-1", "tea", "Leaf"))
        return customer

    waits = capped("waits")
    waits.feed(event("email.sent", "w9", "waits", iso(at(9)), message_id="m2"))
    assert [r[0] for r in waits.reasons()] == ["poor_rating_recovery", "ticket_follow_up",
                                               "new_in_favourite"]
    assert waits.follow_ups[-1].occurred_at == at(8.2)  # when the first of the two left

    buys = capped("buys")
    buys.order("b9", 6, line("new-1", "19.90", "tea"))
    buys.feed(event("email.sent", "b10", "buys", iso(at(9)), message_id="m2"))
    assert [r[0] for r in buys.reasons()] == ["poor_rating_recovery", "ticket_follow_up"]


# --- against a real broker --------------------------------------------------------------


def new_in_favourite(bootstrap: str, prefix: str) -> list[tuple[str, str, str, list[Any]]]:
    found = []
    for record in read_topic(bootstrap, f"{prefix}follow-ups"):
        body = orjson.loads(record.value)
        if body["reason"] == "new_in_favourite":
            found.append((body["customer_id"], body["context"]["product"]["sku"],
                          body["due_at"], body["context"]["matched"]))
    return sorted(found)


@pytest.mark.kafka
def test_a_published_product_reaches_exactly_the_customers_it_matches(
        kafka_bootstrap: str, namespace: str, make_worker: Any) -> None:
    """Customers spread over the partitions; the products come after their history, so they
    reach the customers through the partitions' interest index (every partition reads
    every catalog partition)."""
    def order(customer: str, n: int, day: float, *lines: dict[str, Any]) -> Record:
        return event("order.placed", f"{customer}-o{n}", customer, iso(at(day)),
                     order_id=f"{customer}-o{n}", currency="USD", lines=list(lines))

    def interest(customer: str, n: int, day: float, kind: str, value: str,
                 change: str = "interest.subscribed") -> Record:
        return event(change, f"{customer}-i{n}", customer, iso(at(day)), kind=kind,
                     value=value)

    history = [
        interest("ann", 1, 0, "category", "tea"),  # subscribed
        order("bea", 1, 1, line("t1", "30.00", "tea")),  # favours tea
        order("bea", 2, 2, line("t2", "30.00", "tea"), line("m1", "10.00", "mugs")),
        interest("cy", 1, 0, "category", "tea"),  # subscribed, but has the product
        order("cy", 1, 1, line("new-tea", "19.90", "tea")),
        interest("dan", 1, 0, "category", "tea"),  # subscribed, then left
        interest("dan", 2, 1, "category", "tea", "interest.unsubscribed"),
        order("eva", 1, 1, line("t3", "50.00", "tea")),  # one order: no favourite yet
        order("fin", 1, 1, line("k1", "25.00", "mugs", "Kiln")),  # favours the brand Kiln
        order("fin", 2, 2, line("k2", "25.00", "teapots", "Kiln")),
        interest("hal", 1, 0, "brand", "Kiln"),  # subscribed to the brand
        order("gus", 1, 1, line("h1", "30.00", "mugs", "Hearth")),  # likes something else
        order("gus", 2, 2, line("h2", "30.00", "mugs", "Hearth")),
    ]
    history += [event("email.sent", f"x{n}", f"extra{n}", iso(at(2)), message_id="m")
                for n in range(40)]  # customers on every partition who like nothing
    worker = make_worker(VALUESTREAM_CLOCK="event")
    prefix = f"{namespace}-"
    produce(kafka_bootstrap, prefix, history)
    worker.wait_settled(60)
    produce(kafka_bootstrap, prefix, [product("p1", 5, "new-tea", "tea", "Kiln")])
    worker.wait_settled(60)  # settled: the catalog read to its end, too
    first = [("ann", "new-tea", iso(at(5)), [{"interest": "category:tea", "why": "subscribed"}]),
             ("bea", "new-tea", iso(at(5)), [{"interest": "category:tea", "why": "favourite"}]),
             ("fin", "new-tea", iso(at(5)), [{"interest": "brand:Kiln", "why": "favourite"}]),
             ("hal", "new-tea", iso(at(5)), [{"interest": "brand:Kiln", "why": "subscribed"}])]
    assert new_in_favourite(kafka_bootstrap, prefix) == first

    # Day 10: ann and bea are in the 30-day cool-down of day 5; cy, who had bought the
    # first product, gets this one. Day 40: ann and bea again, cy too (30 days after day 10);
    # fin and hal do not like this brand.
    produce(kafka_bootstrap, prefix, [product("p2", 10, "new-tea-2", "tea", "Leaf"),
                                      product("p3", 40, "new-tea-3", "tea", "Leaf")])
    worker.wait_settled(60)
    tea = [{"interest": "category:tea", "why": "subscribed"}]
    liked = [{"interest": "category:tea", "why": "favourite"}]
    assert new_in_favourite(kafka_bootstrap, prefix) == sorted([
        *first, ("cy", "new-tea-2", iso(at(10)), tea), ("ann", "new-tea-3", iso(at(40)), tea),
        ("bea", "new-tea-3", iso(at(40)), liked), ("cy", "new-tea-3", iso(at(40)), tea)])
    status, bea = worker.profile("bea")
    assert status == 200
    assert [(i["value"], i["favourite"]) for i in bea["interests"]["categories"]] == [
        ("tea", True), ("mugs", False)]
    status, ann = worker.profile("ann")
    assert ann["interests"]["subscribed"] == [{"kind": "category", "value": "tea",
                                               "since": iso(at(0))}]
