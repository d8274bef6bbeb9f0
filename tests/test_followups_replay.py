"""The follow-up engine on a real worker, on the event clock.

A scripted history with customers for every reason is replayed in event-time order: each
event is produced once the previous one is accounted for and every partition has ticked, so
the clock never runs ahead of a customer's own events (topics carry no order between them).
The worker is killed with SIGKILL half-way while follow-ups are pending. The output must be
exactly the expected (customer, reason, due_at), each once (a repeat after the kill may occur
but must carry the same event_id), and nothing else.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from streams.domain.models import DEFAULT_PARAMS
from tests.helpers import Record, Worker, event, produce, read_topic, wait_for

pytestmark = pytest.mark.kafka
DAY0 = datetime(2026, 3, 2, tzinfo=UTC)


def at(day: float, hour: float = 0) -> datetime:
    return DAY0 + timedelta(days=day, hours=hour)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def first_age(x: int, t_x: int, threshold: int) -> int:
    """The first age in days at which MBG/NBD purchase silence alone reaches a threshold."""
    p = DEFAULT_PARAMS.mbgnbd

    def points(age: int) -> int:
        alive = 1 / (1 + p.a / (p.b + x) * ((p.alpha + age) / (p.alpha + t_x)) ** (p.r + x))
        return math.floor(100 * (1 - alive) + 1e-9)

    return next(age for age in range(t_x, 10_000) if points(age) >= threshold)


JO_HIGH = at(-400 + first_age(2, 20, 70))  # jo's churn risk turns high at that midnight


class Script:
    def __init__(self) -> None:
        self.events: list[tuple[datetime, Record]] = []

    def add(self, kind: str, customer: str, moment: datetime, **fields: Any) -> None:
        event_id = f"{customer}-{len(self.events)}"
        self.events.append((moment, event(kind, event_id, customer, iso(moment), **fields)))

    def order(self, customer: str, moment: datetime, amount: str = "20.00") -> None:
        self.add("order.placed", customer, moment, order_id=f"o{len(self.events)}",
                 currency="USD", lines=[{"sku": "s", "quantity": 1, "unit_price": amount}])

    def ticket(self, customer: str, kind: str, moment: datetime, ticket: str = "t",
               **fields: Any) -> None:
        self.add(f"ticket.{kind}", customer, moment, ticket_id=ticket, **fields)


def scripted_history() -> list[Record]:
    s = Script()
    s.order("ada", at(0, 10))  # a first order and nothing else: check-in on day 7
    s.order("ben", at(0, 10))  # ordered again on day 3: no check-in; reorder due day 10
    s.order("ben", at(3, 10))
    s.ticket("dee", "opened", at(1, 8))  # resolved before overdue: follow-up 2 days later
    s.ticket("dee", "resolved", at(2, 8))
    s.ticket("eli", "opened", at(1, 8), priority="high")  # still open after 24 hours
    s.ticket("fay", "opened", at(1, 8), priority="low")  # reopened before the follow-up
    s.ticket("fay", "resolved", at(1, 9))
    s.ticket("fay", "reopened", at(2, 9))
    s.ticket("fay", "resolved", at(2, 10))
    s.ticket("gus", "opened", at(1, 8))  # a poor rating: recovery at once, follow-up later
    s.ticket("gus", "resolved", at(1, 10))
    s.ticket("gus", "rated", at(1, 11), csat=1)
    # hal: three follow-ups due at the same moment (day 7 09:30) against a cap of 2: the
    # overdue ticket and the ticket follow-up go, the reorder reminder waits for a free slot.
    s.order("hal", at(-7, 10))
    s.order("hal", at(0, 9.5))
    s.ticket("hal", "opened", at(4, 9), ticket="t2")
    s.ticket("hal", "opened", at(4, 9.5), ticket="t1")
    s.ticket("hal", "resolved", at(5, 9.5), ticket="t2")
    # ivy: a second resolved ticket within the cool-down of the first follow-up
    s.ticket("ivy", "opened", at(1, 8))
    s.ticket("ivy", "resolved", at(1, 10))
    s.ticket("ivy", "opened", at(10, 8), ticket="t2")
    s.ticket("ivy", "resolved", at(10, 10), ticket="t2")
    # jo: a big spender (platinum from the second order) who then goes silent
    for day in (-400, -390, -380):
        s.order("jo", at(day, 10), amount="5000.00")
    # kim: no order for two months, then two clicks within 14 days
    s.order("kim", at(-60, 10))
    s.add("email.sent", "kim", at(1, 10), message_id="m1")
    s.add("email.clicked", "kim", at(2, 10), message_id="m1")
    s.add("email.clicked", "kim", at(5, 10), message_id="m1")
    # the clock: another customer's events, around jo's changes and then daily
    for moment in (at(-300, 12), JO_HIGH + timedelta(hours=12), *(at(d, 12) for d in range(1, 16))):
        s.add("email.sent", "clockwork", moment, message_id=f"c{moment.timestamp()}")
    return [record for _, record in sorted(s.events, key=lambda item: item[0])]


EXPECTED = sorted([
    ("ada", "first_order_check_in", iso(at(7, 10))),
    ("ben", "reorder_due", iso(at(10, 10))),
    ("dee", "ticket_follow_up", iso(at(4, 8))),
    ("eli", "ticket_overdue", iso(at(2, 8))),
    ("fay", "ticket_follow_up", iso(at(4, 10))),
    ("gus", "poor_rating_recovery", iso(at(1, 11))),
    ("gus", "ticket_follow_up", iso(at(3, 10))),
    ("hal", "ticket_overdue", iso(at(7, 9.5))),
    ("hal", "ticket_follow_up", iso(at(7, 9.5))),
    ("hal", "reorder_due", iso(at(14, 9.5))),  # deferred by the cap
    ("ivy", "ticket_follow_up", iso(at(3, 10))),  # and none for t2: cool-down
    # Jo's first-order check-in fell due before the second order: the worker does the due
    # work before the event that comes after it, as a live clock would have.
    ("jo", "first_order_check_in", iso(at(-393, 10))),
    ("jo", "vip_thank_you", iso(at(-390, 10))),
    ("jo", "win_back", iso(JO_HIGH)),
    ("kim", "warm_lead", iso(at(5, 10))),
])


def ticks(worker: Worker) -> float:
    return sum(v for (name, _), v in worker.metrics().items() if name == "valuestream_ticks_total")


def step(worker: Worker, bootstrap: str, prefix: str, record: Record, accounted: int) -> None:
    produce(bootstrap, prefix, [record])
    wait_for(lambda: sum(worker.events_by_outcome().values()) >= accounted, 30,
             f"event {accounted} to be accounted for")
    seen = ticks(worker)
    wait_for(lambda: ticks(worker) >= seen + 2 * 4, 30, "two ticks on every partition")


def test_follow_ups_replay_exactly_with_a_kill_half_way(make_worker: Any, kafka_bootstrap: str,
                                                       namespace: str) -> None:
    prefix = f"{namespace}-"
    worker = make_worker("w1", VALUESTREAM_CLOCK="event")
    history = scripted_history()
    kill_after = next(i for i, (_, _, value) in enumerate(history)
                      if orjson.loads(value)["occurred_at"] >= iso(at(8)))
    accounted = 0
    for n, record in enumerate(history):
        if n == kill_after:  # ben's and hal's reminders are pending now
            pending = worker.profile("hal")[1]["follow_ups"]
            assert [f["reason"] for f in pending] == ["reorder_due"]
            worker.kill()
            worker.start()
            accounted = 0  # the restarted worker counts afresh
        accounted += 1
        step(worker, kafka_bootstrap, prefix, record, accounted)

    emitted = [orjson.loads(r.value) for r in read_topic(kafka_bootstrap, f"{prefix}follow-ups")]
    ids: dict[tuple[str, str, str], set[str]] = {}
    for e in emitted:
        ids.setdefault((e["customer_id"], e["reason"], e["due_at"]), set()).add(e["event_id"])
    assert sorted(ids) == EXPECTED
    assert all(len(event_ids) == 1 for event_ids in ids.values())  # repeats keep their id

    hal = [e for e in emitted if e["customer_id"] == "hal"]
    assert all(e["type"] == "follow_up.due" and 0 <= e["priority"] <= 100 for e in emitted)
    assert all(e["expires_at"] > e["due_at"] and e["suggested_action"] for e in emitted)
    overdue = next(e for e in hal if e["reason"] == "ticket_overdue")
    assert overdue["context"]["ticket_id"] == "t1" and overdue["context"]["ticket_open"]
    assert overdue["priority"] > next(e for e in hal if e["reason"] == "reorder_due")["priority"]
