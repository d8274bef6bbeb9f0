"""A scripted scenario against a real broker and worker: exact profiles, dead letters,
accounting and erasure.

Expected values are worked out by hand in the comments (rules: default margin 0.30,
ticket cost 2.50, 1 EUR = 1.10 USD, money rounded half-up to cents).
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from harness.kafka import Record, event, produce, read_at_least, read_topic
from harness.worker import Worker, application_env
from streams.deadletters import original_bytes
from tests.conftest import TEST_SETTINGS

pytestmark = pytest.mark.kafka
AS_OF = "2026-04-10T00:00:00Z"


def scenario() -> list[Record]:
    alice = [
        # o1: revenue 2x19.99 + 5.50 = 45.48; discount 2x5.00 = 10.00;
        #     cost 2x8.00 + 5.50x0.70 = 19.85; paid before due: on time.
        event("order.placed", "a1", "alice", "2026-03-01T10:00:00Z", order_id="o1",
              currency="USD", payment_due_at="2026-03-15T00:00:00Z",
              lines=[{"sku": "A", "quantity": 2, "unit_price": 19.99, "list_price": 24.99,
                      "unit_cost": 8.00},
                     {"sku": "B", "quantity": 1, "unit_price": "5.50"}]),
        event("order.paid", "a2", "alice", "2026-03-10T00:00:00Z", order_id="o1"),
        # o2: revenue 30.00, cost 12.00, paid late, refund 6.00 (margin lost 6 x 18/30 = 3.60)
        event("order.placed", "a3", "alice", "2026-03-05T09:00:00Z", order_id="o2",
              currency="USD", payment_due_at="2026-03-06T00:00:00Z",
              lines=[{"sku": "C", "quantity": 3, "unit_price": "10.00", "unit_cost": "4.00"}]),
        event("order.paid", "a4", "alice", "2026-03-08T00:00:00Z", order_id="o2"),
        event("order.refunded", "a5", "alice", "2026-03-09T00:00:00Z", order_id="o2",
              amount="6.00"),
        # o3: 100 EUR = 110.00 USD, then cancelled: leaves every total.
        event("order.placed", "a6", "alice", "2026-03-05T15:00:00Z", order_id="o3",
              currency="EUR", lines=[{"sku": "D", "quantity": 1, "unit_price": 100,
                                      "unit_cost": 60}]),
        event("order.cancelled", "a7", "alice", "2026-03-06T00:00:00Z", order_id="o3"),
        # a redelivery of a1: changes nothing
        event("order.placed", "a1", "alice", "2026-03-01T10:00:00Z", order_id="o1",
              currency="USD", lines=[{"sku": "A", "quantity": 1, "unit_price": 1}]),
        # the amendment of o4 arrives before o4 itself: parked, then applied.
        # o4 after amendment: revenue 2x20 = 40.00, discount 2x5 = 10.00, cost 40x0.7 = 28.00
        event("order.amended", "a10", "alice", "2026-04-01T13:00:00Z", order_id="o4",
              lines=[{"sku": "E", "quantity": 2, "unit_price": 20, "list_price": 25}]),
        event("order.placed", "a9", "alice", "2026-04-01T12:00:00Z", order_id="o4",
              currency="USD", lines=[{"sku": "E", "quantity": 1, "unit_price": 20}]),
        event("ticket.opened", "a11", "alice", "2026-03-02T08:00:00Z", ticket_id="t1",
              priority="high"),
        event("ticket.resolved", "a12", "alice", "2026-03-03T08:00:00Z", ticket_id="t1"),
        event("ticket.rated", "a13", "alice", "2026-03-04T08:00:00Z", ticket_id="t1", csat=4),
        event("email.sent", "a14", "alice", "2026-03-01T11:00:00Z", message_id="m1",
              campaign_id="spring"),
        event("email.sent", "a15", "alice", "2026-03-02T11:00:00Z", message_id="m2"),
        event("email.opened", "a16", "alice", "2026-03-01T12:00:00Z", message_id="m1"),
        event("email.opened", "a17", "alice", "2026-03-02T12:00:00Z", message_id="m1"),
        event("email.opened", "a17", "alice", "2026-03-02T12:00:00Z", message_id="m1"),
        event("email.clicked", "a18", "alice", "2026-03-02T13:00:00Z", message_id="m1",
              extra_field_from_the_future=True),
    ]
    bob = [
        event("ticket.opened", "b1", "bob", "2026-03-10T08:00:00Z", ticket_id="t2",
              priority="urgent"),
        event("ticket.rated", "b2", "bob", "2026-03-11T08:00:00Z", ticket_id="t2", csat=2),
        event("ticket.opened", "b3", "bob", "2026-03-12T08:00:00Z", ticket_id="t3"),
        event("ticket.resolved", "b4", "bob", "2026-03-13T08:00:00Z", ticket_id="t3"),
        event("ticket.reopened", "b5", "bob", "2026-03-14T08:00:00Z", ticket_id="t3"),
        event("ticket.rated", "b6", "bob", "2026-03-15T08:00:00Z", ticket_id="t3", csat=5),
        event("email.sent", "b7", "bob", "2026-03-16T08:00:00Z", message_id="m3"),
        event("email.bounced", "b8", "bob", "2026-03-16T09:00:00Z", message_id="m3"),
        event("email.unsubscribed", "b9", "bob", "2026-03-16T10:00:00Z", message_id="m3"),
        # a free order: revenue 0, discount 15.00
        event("order.placed", "b10", "bob", "2026-03-20T08:00:00Z", order_id="o5",
              currency="USD", lines=[{"sku": "F", "quantity": 1, "unit_price": 0,
                                      "list_price": 15}]),
    ]
    carol = [
        # 23:30 at UTC-5 is 04:30 UTC the next day. Revenue 2.665 (2.67 half-up),
        # cost 2.665 x 0.7 = 1.8655, margin 0.7995.
        event("order.placed", "c1", "carol", "2026-03-03T23:30:00-05:00", order_id="o6",
              currency="USD", lines=[{"sku": "G", "quantity": 1, "unit_price": "2.665"}]),
        event("order.paid", "c2", "carol", "2026-03-05T00:00:00Z", order_id="o6"),
        # refund 1.00: margin lost 1 x 0.7995 / 2.665 = 0.30
        event("order.refunded", "c3", "carol", "2026-03-06T00:00:00Z", order_id="o6",
              amount=1),
        # more than the 1.665 left: a dead letter
        event("order.refunded", "c4", "carol", "2026-03-07T00:00:00Z", order_id="o6",
              amount="5.00"),
    ]
    dave = [
        event("order.placed", "d1", "dave", "2026-03-02T08:00:00Z", order_id="o7",
              currency="USD", lines=[{"sku": "H", "quantity": 1, "unit_price": 50}]),
        event("email.sent", "d2", "dave", "2026-03-02T09:00:00Z", message_id="m4"),
        event("customer.erasure_requested", "d3", "dave", "2026-03-20T00:00:00Z"),
    ]
    eve = [
        event("order.placed", "e1", "eve", "2026-03-02T08:00:00Z", order_id="o8",
              currency="GBP", lines=[{"sku": "I", "quantity": 1, "unit_price": 50}]),
    ]
    return alice + bob + carol + dave + eve + MALFORMED


def _raw(event_type: str, customer: str, **fields: Any) -> bytes:
    return orjson.dumps({"event_id": f"x-{event_type}", "type": event_type,
                         "customer_id": customer, "occurred_at": "2026-03-01T10:00:00Z",
                         **fields})


MALFORMED: list[Record] = [
    ("orders", b"alice", b'{"event_id": "bad-1", "type": "order.placed",'),
    ("support-tickets", b"bob", _raw("ticket.rated", "bob", ticket_id="t2", csat=7)),
    ("email-events", b"mallory", _raw("email.sent", "bob", message_id="m9")),
    ("orders", b"alice", _raw("order.shipped", "alice", order_id="o1")),
    ("orders", b"alice", _raw("order.paid", "alice", order_id="o1")
     .replace(b"10:00:00Z", b"10:00:00")),
    ("email-events", b"bob", b"\xff\xfe not utf-8"),
]
EXPECTED_DEAD_LETTERS = sorted([
    ("orders", "invalid_json"),
    ("support-tickets", "schema_violation"),
    ("email-events", "key_mismatch"),
    ("orders", "unknown_type"),
    ("orders", "bad_timestamp"),
    ("email-events", "invalid_json"),
    ("orders", "unknown_currency"),
    ("orders", "refund_exceeds_order"),
])

NO_INTERESTS = {"categories": [], "brands": [], "subscribed": []}  # no categories or brands
NO_REFERRALS = {"referred_by": None, "referrals": 0, "referred_buyers": 0,
                "referred_net_revenue": "0.00", "referred_clv_365d": "0.00"}
# Not compared here: the models' outputs (tests/test_btyd.py and others check them), and
# the cross-sell recommendations, which depend on when the live model learnt what
# (tests/test_cross_sell.py).
PREDICTIVE_FIELDS = {"p_alive", "expected_purchases_90d", "expected_order_value",
                     "predicted_clv_365d", "churn_risk", "rfm", "value_tier", "follow_ups",
                     "recommended_products", "relationship_value_365d"}
EXPECTED = {
    "alice": {
        "customer_id": "alice", "as_of": AS_OF, "currency": "USD",
        "first_seen_at": "2026-03-01T10:00:00Z", "updated_at": "2026-04-01T13:00:00Z",
        "orders": 3, "first_order_at": "2026-03-01T10:00:00Z",
        "last_order_at": "2026-04-01T12:00:00Z", "days_since_last_order": 8,  # 8.5 days
        "revenue": "115.48",  # 45.48 + 30.00 + 40.00
        "refunds": "6.00", "net_revenue": "109.48",
        "gross_margin": "55.63",  # 25.63 + 18.00 + 12.00
        "discounts": "20.00", "average_order_value": "38.49",  # 115.48 / 3
        "cancelled_orders": 1, "amended_orders": 1, "late_payments": 1, "paid_orders": 2,
        "margin_rate": 0.4752,  # (55.63 - 3.60) / 109.48
        "discount_rate": 0.1476,  # 20 / (115.48 + 20)
        "cancel_rate": 0.25, "amend_rate": 0.25, "late_payment_rate": 0.5,
        "support_cost": "2.50", "net_profit": "49.53",  # 55.63 - 3.60 - 2.50
        "tickets_total": 1, "tickets_open": 0, "tickets_90d": 1,
        "oldest_open_ticket_at": None, "csat_average": 4.0, "csat_last": 4,
        "emails_sent": 2, "emails_opened": 1, "emails_clicked": 1, "open_rate": 0.5,
        "last_open_at": "2026-03-02T12:00:00Z", "last_click_at": "2026-03-02T13:00:00Z",
        "unsubscribed": False, "bounced": False,
        # purchase days 03-01 (45.48), 03-05 (30 - 6 = 24), 04-01 (40)
        "frequency": 2, "recency_days": 31, "age_days": 40, "monetary_value": "32.00",
        "interests": NO_INTERESTS, **NO_REFERRALS,
    },
    "bob": {
        "customer_id": "bob", "as_of": AS_OF, "currency": "USD",
        "first_seen_at": "2026-03-10T08:00:00Z", "updated_at": "2026-03-20T08:00:00Z",
        "orders": 1, "first_order_at": "2026-03-20T08:00:00Z",
        "last_order_at": "2026-03-20T08:00:00Z", "days_since_last_order": 20,
        "revenue": "0.00", "refunds": "0.00", "net_revenue": "0.00", "gross_margin": "0.00",
        "discounts": "15.00", "average_order_value": "0.00",
        "cancelled_orders": 0, "amended_orders": 0, "late_payments": 0, "paid_orders": 0,
        "margin_rate": None, "discount_rate": 1.0, "cancel_rate": 0.0, "amend_rate": 0.0,
        "late_payment_rate": None, "support_cost": "5.00", "net_profit": "-5.00",
        "tickets_total": 2, "tickets_open": 2, "tickets_90d": 2,
        "oldest_open_ticket_at": "2026-03-10T08:00:00Z", "csat_average": 3.5, "csat_last": 5,
        "emails_sent": 1, "emails_opened": 0, "emails_clicked": 0, "open_rate": 0.0,
        "last_open_at": None, "last_click_at": None, "unsubscribed": True, "bounced": True,
        "frequency": 0, "recency_days": 0, "age_days": 21, "monetary_value": "0.00",
        "interests": NO_INTERESTS, **NO_REFERRALS,
    },
    "carol": {
        "customer_id": "carol", "as_of": AS_OF, "currency": "USD",
        "first_seen_at": "2026-03-04T04:30:00Z", "updated_at": "2026-03-06T00:00:00Z",
        "orders": 1, "first_order_at": "2026-03-04T04:30:00Z",
        "last_order_at": "2026-03-04T04:30:00Z", "days_since_last_order": 36,
        "revenue": "2.67", "refunds": "1.00",
        "net_revenue": "1.67",  # 1.665 half-up (half-even would say 1.66)
        "gross_margin": "0.80", "discounts": "0.00", "average_order_value": "2.67",
        "cancelled_orders": 0, "amended_orders": 0, "late_payments": 0, "paid_orders": 1,
        "margin_rate": 0.3,  # (0.7995 - 0.30) / 1.665
        "discount_rate": 0.0, "cancel_rate": 0.0, "amend_rate": 0.0, "late_payment_rate": 0.0,
        "support_cost": "0.00", "net_profit": "0.50",  # 0.4995 half-up
        "tickets_total": 0, "tickets_open": 0, "tickets_90d": 0,
        "oldest_open_ticket_at": None, "csat_average": None, "csat_last": None,
        "emails_sent": 0, "emails_opened": 0, "emails_clicked": 0, "open_rate": None,
        "last_open_at": None, "last_click_at": None, "unsubscribed": False, "bounced": False,
        "frequency": 0, "recency_days": 0, "age_days": 37, "monetary_value": "0.00",
        "interests": NO_INTERESTS, **NO_REFERRALS,
    },
}


@pytest.fixture(scope="module")
def scenario_run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
                 ) -> dict[str, Any]:
    tmp: Path = tmp_path_factory.mktemp("scenario")
    rates = tmp / "rates.json"
    rates.write_text('{"EUR": "1.10"}')
    namespace = f"scenario{uuid.uuid4().hex[:8]}"
    worker = Worker("w1", application_env(kafka_bootstrap, namespace, tmp / "w1",
                                          **TEST_SETTINGS, VALUESTREAM_FX_RATES=str(rates),
                                          VALUESTREAM_TICKET_COST="2.50"), log_dir=tmp)
    worker.start()
    records = scenario()
    # The amendment of o4 goes first, alone: its order is unknown when it is processed.
    amendment = next(r for r in records if b'"a10"' in (r[2] or b""))
    produced = produce(kafka_bootstrap, f"{namespace}-", [amendment])
    try:
        worker.wait(lambda: worker.events_by_outcome().get("parked") == 1, 60,
                    "the amendment to be parked")
        produced += produce(kafka_bootstrap, f"{namespace}-",
                            [r for r in records if r is not amendment])
        worker.wait(lambda: worker.processed() >= produced, 60,
                    "every message to be accounted for")
        yield {"worker": worker, "produced": produced, "prefix": f"{namespace}-",
               "bootstrap": kafka_bootstrap}
    finally:
        worker.stop()


@pytest.mark.parametrize("customer_id", sorted(EXPECTED))
def test_profiles_are_exact(scenario_run: dict[str, Any], customer_id: str) -> None:
    status, profile = scenario_run["worker"].profile(customer_id, as_of=AS_OF)
    assert status == 200
    assert {k: profile[k] for k in EXPECTED[customer_id]} == EXPECTED[customer_id]
    assert set(profile) - set(EXPECTED[customer_id]) == PREDICTIVE_FIELDS


def test_dead_letters_carry_codes_and_original_bytes(scenario_run: dict[str, Any]) -> None:
    prefix = scenario_run["prefix"]
    records = read_at_least(scenario_run["bootstrap"], f"{prefix}dead-letters",
                            len(EXPECTED_DEAD_LETTERS))
    letters = [orjson.loads(r.value) for r in records]
    assert sorted((d["source_topic"].removeprefix(prefix), d["error"]["code"])
                  for d in letters) == EXPECTED_DEAD_LETTERS
    originals = {(t, k, v) for t, k, v in MALFORMED}
    for letter in letters:
        key, value = original_bytes(letter)
        if letter["error"]["code"] not in {"unknown_currency", "refund_exceeds_order"}:
            assert (letter["source_topic"].removeprefix(prefix), key, value) in originals
        assert letter["error"]["message"]
        assert isinstance(letter["offset"], int) and isinstance(letter["partition"], int)
    non_utf8 = [d for d in letters if d["value_base64"]]
    assert [base64.b64decode(d["value"]) for d in non_utf8] == [b"\xff\xfe not utf-8"]


def test_every_message_is_accounted_for(scenario_run: dict[str, Any]) -> None:
    outcomes = scenario_run["worker"].events_by_outcome()
    assert sum(outcomes.values()) == scenario_run["produced"]
    assert outcomes["dead_letter"] == len(EXPECTED_DEAD_LETTERS)
    assert outcomes["parked"] == 1  # the amendment of o4
    assert outcomes["duplicate"] >= 2  # a1 and a17 again (dave's may add more)


def test_customers_gauge_counts_profiles_owned(scenario_run: dict[str, Any]) -> None:
    worker = scenario_run["worker"]

    # alice, bob and carol; dave was erased and eve never had a valid event.
    worker.wait(lambda: worker.metric("valuestream_customers") == 3, 30,
                "the customers gauge to add up to 3")


def test_unknown_customer_or_time_is_404_and_bad_as_of_is_400(scenario_run: dict[str, Any]) -> None:
    worker = scenario_run["worker"]
    assert worker.profile("eve")[0] == 404  # its only event was a dead letter
    status, body = worker.profile("nobody")
    assert (status, body["error"]) == (404, "not_found")
    status, body = worker.profile("alice", as_of="2026-04-10T00:00:00")  # naive
    assert (status, body["error"]) == (400, "bad_as_of")
    status, body = worker.profile("alice", as_of="2026-03-01T09:59:59Z")  # before her first
    assert (status, body["error"]) == (404, "before_first_event")
    assert worker.profile("alice", as_of="2026-03-01T10:00:00Z")[0] == 200


def test_erasure_leaves_404_and_a_tombstone(scenario_run: dict[str, Any]) -> None:
    worker, prefix = scenario_run["worker"], scenario_run["prefix"]
    assert worker.profile("dave")[0] == 404
    snapshots = read_topic(scenario_run["bootstrap"], f"{prefix}customer-value")
    dave = [r for r in snapshots if r.key == b"dave"]
    assert dave, "the tombstone for dave is missing"
    assert dave[-1].value is None
    assert all(r.value is not None for r in snapshots if r.key != b"dave")
