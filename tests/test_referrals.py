"""Referral value: a chain of referrals (A brings B and C; B brings D) with orders, a refund
and a cancellation gives exact referred revenue on A and B; self-referral and a cycle are
dead letters. The pure step with the real encoding of the internal updates first, then the
whole path on a real broker with a SIGKILL during the load.

Expected values by hand: B: 100.00 - 20.00 refunded + 50.00 = 130.00; C: 40.00 (cancelled)
+ 25.50 = 25.50; D: 60.00. A: 130.00 + 25.50 = 155.50 from two buyers; B: 60.00 from one.
"""

from __future__ import annotations

import random
import threading
import time
from decimal import Decimal
from typing import Any

import orjson
import pytest

from agents.customers import referral_record
from harness.kafka import Record, event, produce, read_topic
from streams.decode import Invalid, decode
from streams.domain.profile import build_profile
from tests.test_interests import PREDICTOR, RULES, Customer, at, iso


def order(customer: str, order_id: str, day: float, amount: str, **fields: Any) -> Record:
    return event("order.placed", f"{customer}-{order_id}", customer, iso(at(day)),
                 order_id=order_id, currency="USD", **fields,
                 lines=[{"sku": "s", "quantity": 1, "unit_price": amount}])


def chain() -> list[Record]:
    return [
        order("B", "o1", 0, "100.00", referred_by="A"),
        event("customer.referred", "C-r", "C", iso(at(1)), referred_by="A"),
        event("customer.referred", "D-r", "D", iso(at(1)), referred_by="B"),
        event("order.refunded", "B-r1", "B", iso(at(2)), order_id="o1", amount="20.00"),
        order("C", "o3", 3, "40.00"),
        order("D", "o5", 3, "60.00"),
        event("order.cancelled", "C-c3", "C", iso(at(4)), order_id="o3"),
        order("B", "o2", 5, "50.00"),
        order("C", "o4", 6, "25.50"),
        event("email.sent", "A-m", "A", iso(at(6)), message_id="m"),
    ]


BAD = [  # once the chain is known: a self-referral, a cycle, a second referrer
    event("customer.referred", "E-r", "E", iso(at(7)), referred_by="E"),
    event("customer.referred", "A-r", "A", iso(at(7)), referred_by="D"),
    event("customer.referred", "B-r2", "B", iso(at(7)), referred_by="C"),
]
BAD_CODES = {"E": "self_referral", "A": "referral_cycle", "B": "already_referred"}


def test_a_chain_gives_exact_referred_value_and_refuses_cycles() -> None:
    customers = {name: Customer(name) for name in "ABCDE"}
    letters: dict[str, str] = {}

    def feed(record: Record) -> None:
        customer = customers[orjson.loads(record[2] or b"")["customer_id"]]
        result = customer.feed(record)
        for letter in result.dead_letters:
            letters[customer.customer_id] = letter.code
        for update in result.referrals:  # through the internal topic, as encoded there
            value = referral_record(update)
            assert not isinstance(decode("referrals", update.referrer.encode(), value),
                                  Invalid)
            feed(("referrals", update.referrer.encode(), value))

    for record in chain() + BAD:
        feed(record)
    assert letters == BAD_CODES
    a, b = (customers[n].state for n in "AB")
    assert a is not None and b is not None
    a_profile = build_profile(a, at(8), RULES, PREDICTOR)
    b_profile = build_profile(b, at(8), RULES, PREDICTOR)
    assert (a_profile.referrals, a_profile.referred_buyers, a_profile.referred_net_revenue) == (
        2, 2, "155.50")
    assert (b_profile.referrals, b_profile.referred_buyers, b_profile.referred_net_revenue) == (
        1, 1, "60.00")
    assert b_profile.referred_by == "A" and a_profile.referred_by is None
    # The referred CLV is the sum of the referred customers' own predicted CLV, each as of
    # their latest decision; the relationship value adds the customer's own.
    own = {}
    for name in "BC":
        state = customers[name].state
        assert state is not None and state.churn_assessed_at is not None
        own[name] = Decimal(build_profile(state, state.churn_assessed_at, RULES,
                                          PREDICTOR).predicted_clv_365d or "0")
    assert Decimal(a_profile.referred_clv_365d) == own["B"] + own["C"]
    assert a_profile.relationship_value_365d == a_profile.referred_clv_365d  # A never bought
    thanks = [f.context["referred_customer_id"] for f in customers["A"].follow_ups
              if f.reason == "referral_thank_you"]
    assert thanks == ["B"]  # C's came within the 30-day cool-down of B's
    # Erasing C takes C out of A's totals, as if never referred.
    feed(event("customer.erasure_requested", "C-x", "C", iso(at(9))))
    a = customers["A"].state
    assert a is not None
    a_profile = build_profile(a, at(9), RULES, PREDICTOR)
    assert (a_profile.referrals, a_profile.referred_net_revenue) == (1, "130.00")


# --- against a real broker, with a SIGKILL during the load -------------------------------------


@pytest.mark.kafka
def test_referred_totals_survive_a_kill(kafka_bootstrap: str, namespace: str,
                                        make_worker: Any) -> None:
    prefix = f"{namespace}-"
    worker = make_worker(VALUESTREAM_CLOCK="event")
    records = chain()
    noise = [event("email.sent", f"n{n}", f"noise{n}", iso(at(n / 100)), message_id="m")
             for n in range(600)]  # other customers, so that the kill lands mid-load
    mixed = sorted(records + noise, key=lambda r: orjson.loads(r[2] or b"")["occurred_at"])
    done = threading.Event()

    def load() -> None:
        for start in range(0, len(mixed), 40):
            produce(kafka_bootstrap, prefix, mixed[start:start + 40])
            time.sleep(0.1)
        done.set()

    loader = threading.Thread(target=load)
    loader.start()
    time.sleep(random.Random(3).uniform(0.3, 1.0))
    worker.kill()
    worker.start()
    loader.join()
    worker.wait_settled(120)
    produce(kafka_bootstrap, prefix, BAD)
    worker.wait_settled(60)

    def totals(name: str) -> tuple[Any, ...]:
        status, profile = worker.profile(name, as_of=iso(at(8)))
        assert status == 200
        return (profile["referrals"], profile["referred_buyers"],
                profile["referred_net_revenue"], profile["referred_by"])

    worker.wait(lambda: totals("A") == (2, 2, "155.50", None)
                and totals("B") == (1, 1, "60.00", "A"), 60, "the referred totals")
    codes = {orjson.loads(r.value)["error"]["code"]: r.key.decode()
             for r in read_topic(kafka_bootstrap, f"{prefix}dead-letters")}
    assert {customer: code for code, customer in codes.items()} == BAD_CODES
