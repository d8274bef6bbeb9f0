"""``valuestream demo``: plausible shop traffic for trying valuestream out.

Repeat buyers and one-time buyers (loyal ones mostly buy from one favourite category),
amendments, cancellations, refunds, late payments, tickets with ratings, email sends, opens
and clicks, subscriptions to categories and brands, referrals (on a first order or on their
own; now and then a self-referral or a cycle, which are dead letters), a new product in the
catalog (the 2,000th message, then every 20,000th), and about 1% malformed messages (bad
JSON, a schema violation, a key mismatch, an unknown currency) that end as dead letters.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from rich.console import Console
from rich.progress import Progress

from schemas.events import TOPIC_OF_TYPE
from streams.publish import SLICE, open_producer
from streams.settings import Settings

# sku, price, cost, category, brand
SKUS = [("mug", "12.50", "4.10", "mugs", "Kiln"), ("tea-100g", "8.90", None, "tea", "Leaf & Co"),
        ("teapot", "39.00", "15.20", "teapots", "Kiln"),
        ("gift-box", "24.99", "9.75", "gifts", "Hearth"),
        ("sampler", "17.45", None, "tea", "Hearth"),
        ("green-50g", "6.40", None, "tea", "Leaf & Co"),
        ("cup-set", "29.00", "11.00", "mugs", "Hearth")]
CATEGORIES = sorted({sku[3] for sku in SKUS})
BRANDS = sorted({sku[4] for sku in SKUS})
# A new product in the catalog: the 2,000th message, then every 20,000th (one a week or so
# in make bench's history; one in make run's demo).
FIRST_PRODUCT, PRODUCT_EVERY = 2_000, 20_000


@dataclass(slots=True)
class DemoCustomer:
    customer_id: str
    loyal: bool
    favourite: str  # the category a loyal customer mostly buys from
    orders: list[str] = field(default_factory=list)
    unpaid: list[str] = field(default_factory=list)
    tickets: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


Message = tuple[str, bytes | None, bytes]  # topic (without prefix), key, value


class DemoTraffic:
    def __init__(self, customers: int, seed: int, start: datetime,
                 mean_gap_seconds: float = 30.0, malformed: float = 0.01,
                 relationships: bool = True) -> None:
        self.random = random.Random(seed)
        # False: no categories and brands, subscriptions, products or referrals (the mix
        # before they existed, for ``make bench``'s comparison)
        self.relationships = relationships
        self.now = start
        self.mean_gap = mean_gap_seconds
        self.malformed = malformed  # the share of messages that are broken on purpose
        self.run = f"{int(start.timestamp()):x}"  # ids differ between runs
        self.counter = 0
        self.sent = 0  # messages
        self.customers = [
            DemoCustomer(f"demo-{n:05d}", loyal=self.random.random() < 0.35,
                         favourite=self.random.choice(CATEGORIES))
            for n in range(customers)
        ]

    def messages(self, count: int) -> Iterator[Message]:
        for _ in range(count):
            self._advance()
            yield self.next_message()

    def _advance(self) -> None:
        self.now += timedelta(seconds=self.random.expovariate(1 / self.mean_gap))

    def next_message(self) -> Message:
        """One message of a random customer, happening at ``self.now``."""
        customer = self.random.choice(self.customers)
        if self.random.random() < self.malformed:
            return self._malformed(customer)
        self.sent += 1
        if self.relationships and self.sent >= FIRST_PRODUCT and (
                self.sent - FIRST_PRODUCT) % PRODUCT_EVERY == 0:
            return self._product()
        return self._encode(customer, self._event(customer))

    def _product(self) -> Message:
        """A new product in a category and brand of the shop (keyed by its SKU)."""
        self.counter += 1
        sku = f"new-{self.run}-{self.counter}"
        category, brand = self.random.choice(CATEGORIES), self.random.choice(BRANDS)
        event = {"event_id": f"demo-{self.run}-{self.counter:09d}", "type": "product.published",
                 "occurred_at": self.now.isoformat(), "sku": sku,
                 "title": f"{brand} {category} no. {self.counter}", "category": category,
                 "brand": brand, "price": f"{self.random.randint(5, 60)}.90", "currency": "USD"}
        return TOPIC_OF_TYPE[event["type"]], sku.encode(), orjson.dumps(event)

    def strangers(self) -> list[DemoCustomer]:
        """The customers who have no valid event yet."""
        return [c for c in self.customers if not (c.orders or c.tickets or c.messages)]

    def introductions(self) -> Iterator[Message]:
        """One valid event for each customer who has none yet, spaced like ``messages``."""
        for customer in self.strangers():
            self._advance()
            yield self._encode(customer, self._event(customer))

    @staticmethod
    def _encode(customer: DemoCustomer, event: dict[str, Any]) -> Message:
        return TOPIC_OF_TYPE[event["type"]], customer.customer_id.encode(), orjson.dumps(event)

    def _base(self, customer: DemoCustomer, event_type: str, **fields: Any) -> dict[str, Any]:
        self.counter += 1
        return {
            "event_id": f"demo-{self.run}-{self.counter:09d}",
            "type": event_type,
            "customer_id": customer.customer_id,
            "occurred_at": self.now.isoformat(),
            **fields,
        }

    def _lines(self, c: DemoCustomer) -> list[dict[str, Any]]:
        lines = []
        # Loyal customers mostly buy from their favourite category.
        liked = [sku for sku in SKUS if sku[3] == c.favourite]
        pool = liked if c.loyal and self.random.random() < 0.8 else SKUS
        for sku, price, cost, category, brand in self.random.sample(
                pool, self.random.randint(1, min(3, len(pool)))):
            line: dict[str, Any] = {"sku": sku, "quantity": self.random.randint(1, 3),
                                    "unit_price": price}
            if self.relationships:
                line.update(category=category, brand=brand)
            if self.random.random() < 0.3:
                line["list_price"] = f"{float(price) * 1.2:.2f}"
            if cost:
                line["unit_cost"] = cost
            lines.append(line)
        return lines

    def _event(self, c: DemoCustomer) -> dict[str, Any]:
        r = self.random.random()
        can_reorder = c.loyal or not c.orders
        if r < 0.22 and can_reorder:
            order_id = f"{c.customer_id}-{self.run}-o{len(c.orders) + 1}"
            c.orders.append(order_id)
            c.unpaid.append(order_id)
            currency = "EUR" if self.random.random() < 0.1 else "USD"
            # Most orders are due in 14 days; some in an hour, which customers often miss.
            term = timedelta(hours=1) if self.random.random() < 0.2 else timedelta(days=14)
            due = self.now + term
            referral = {}
            if self.relationships and len(c.orders) == 1 and self.random.random() < 0.15:
                referral["referred_by"] = self.random.choice(self.customers).customer_id
            return self._base(c, "order.placed", order_id=order_id, currency=currency,
                              lines=self._lines(c), payment_due_at=due.isoformat(),
                              **referral)
        if r < 0.36 and c.orders:
            kind = self.random.choices(
                ["order.paid", "order.amended", "order.cancelled", "order.refunded"],
                weights=[6 if c.unpaid else 0, 2, 1, 1])[0]
            paying = kind == "order.paid"
            order_id = c.unpaid.pop(0) if paying else self.random.choice(c.orders)
            fields: dict[str, Any] = {"order_id": order_id}
            if kind == "order.amended":
                fields["lines"] = self._lines(c)
            elif kind == "order.refunded":
                fields["amount"] = "5.00"
            return self._base(c, kind, **fields)
        if r < 0.46:
            if c.tickets and self.random.random() < 0.6:
                ticket_id = self.random.choice(c.tickets)
                kind = self.random.choice(["ticket.resolved", "ticket.rated", "ticket.reopened"])
                extra = {"csat": self.random.randint(1, 5)} if kind == "ticket.rated" else {}
                return self._base(c, kind, ticket_id=ticket_id, **extra)
            ticket_id = f"{c.customer_id}-{self.run}-t{len(c.tickets) + 1}"
            c.tickets.append(ticket_id)
            priority = self.random.choice(["low", "normal", "normal", "high", "urgent"])
            return self._base(c, "ticket.opened", ticket_id=ticket_id, priority=priority)
        if self.relationships and r < 0.465:  # a referral recorded apart from any order
            return self._base(c, "customer.referred",
                              referred_by=self.random.choice(self.customers).customer_id)
        if self.relationships and r < 0.48:
            kind, value = self.random.choice(
                [("category", c.favourite), ("category", self.random.choice(CATEGORIES)),
                 ("brand", self.random.choice(BRANDS))])
            change = "interest.unsubscribed" if self.random.random() < 0.15 else (
                "interest.subscribed")
            return self._base(c, change, kind=kind, value=value)
        if c.messages and self.random.random() < 0.55:
            kind = self.random.choices(
                ["email.opened", "email.clicked", "email.bounced", "email.unsubscribed"],
                weights=[70, 25, 3, 2])[0]
            return self._base(c, kind, message_id=self.random.choice(c.messages))
        message_id = f"{c.customer_id}-{self.run}-m{len(c.messages) + 1}"
        c.messages.append(message_id)
        return self._base(c, "email.sent", message_id=message_id, campaign_id="newsletter")

    def _malformed(self, c: DemoCustomer) -> Message:
        key = c.customer_id.encode()
        kind = self.random.choice(["json", "schema", "key", "currency"])
        if kind == "json":
            return "orders", key, b'{"event_id": "broken", "type": "order.placed",'
        if kind == "schema":
            event = self._base(c, "ticket.rated", ticket_id="t-x", csat=9)
            return "support-tickets", key, orjson.dumps(event)
        if kind == "key":
            event = self._base(c, "email.sent", message_id="m-x")
            return "email-events", b"someone-else", orjson.dumps(event)
        event = self._base(c, "order.placed", order_id=f"{c.customer_id}-xx", currency="XTS",
                           lines=self._lines(c))
        return "orders", key, orjson.dumps(event)


def history_start(events: int, mean_gap_seconds: float = 30.0) -> datetime:
    """Where a history of ``events`` events, ``mean_gap_seconds`` apart on average, starts
    so that it ends before now: its random gaps add up to events x the mean give or take
    about sqrt(events) x the mean, so it starts six such deviations further back. (A
    history that ran into the future would have those events decided at the moment they
    are processed, so what it gives would depend on how fast it is processed.)"""
    return datetime.now(UTC) - timedelta(
        seconds=mean_gap_seconds * (events + 6 * math.sqrt(events)))


def run_demo(settings: Settings, customers: int, events: int, rate: float, seed: int) -> int:
    """Send ``events`` messages, paced at ``rate`` per second (0: as fast as possible).

    Unpaced, the events are a history ending before now, 30 s apart on average; paced, they
    happen in real time."""
    if rate > 0:
        traffic = DemoTraffic(customers, seed, datetime.now(UTC), mean_gap_seconds=1 / rate)
    else:
        traffic = DemoTraffic(customers, seed, history_start(events))
    producer = open_producer(settings)
    began = time.monotonic()
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("demo traffic", total=events)
        for n, (topic, key, value) in enumerate(traffic.messages(events), start=1):
            producer.send(settings.topic(topic), key=key, value=value)
            progress.advance(task)
            if n % SLICE == 0:
                producer.flush()
            if rate > 0:
                ahead = n / rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
    producer.flush()
    producer.close()
    print(f"sent {events} demo event(s) for {customers} customer(s)")
    return 0
