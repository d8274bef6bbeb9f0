"""The value rules as pure functions: no broker, no Faust."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from harness.kafka import event as record
from schemas.events import Event
from streams.codec import decode_state, encode_state
from streams.decode import Invalid, decode
from streams.domain.apply import Applied, apply_event, expire_parked
from streams.domain.models import DEFAULT_PARAMS
from streams.domain.money import money
from streams.domain.predict import Predictor
from streams.domain.profile import build_profile
from streams.domain.rules import Rules
from streams.domain.state import CustomerState, Source, id_hash

RULES = Rules(
    currency="USD",
    fx_rates={"USD": Decimal(1), "EUR": Decimal("1.10")},
    default_margin=Decimal("0.30"),
    ticket_cost=Decimal(0),
    dedup_window=timedelta(days=35),
    orphan_ttl=timedelta(days=7),
    max_parked=100,
    max_parked_bytes=262_144,
)
NOW = datetime(2026, 5, 1, tzinfo=UTC)


def parse(event_type: str, event_id: str, occurred_at: str, **fields: Any) -> tuple[Event, Source]:
    topic, key, value = record(event_type, event_id, "cust", occurred_at, **fields)
    decoded = decode(topic, key, value)
    assert not isinstance(decoded, Invalid), decoded
    return decoded, Source(topic, 0, 0, key, value)


class Customer:
    """Applies events in turn, round-tripping the state through its stored form each time."""

    def __init__(self) -> None:
        self.state: CustomerState | None = None

    def apply(self, event_type: str, event_id: str, occurred_at: str, now: datetime = NOW,
              **fields: Any) -> Applied:
        event, source = parse(event_type, event_id, occurred_at, **fields)
        state, applied = apply_event(self.state, event, source, now, RULES)
        if applied.changed or self.state is None:
            self.state = decode_state(encode_state(state)) if state else None
        return applied

    def profile(self, as_of: datetime = NOW) -> dict[str, Any]:
        assert self.state is not None
        return msgspec.to_builtins(build_profile(self.state, as_of, RULES,
                                                 Predictor(DEFAULT_PARAMS)))


def order(c: Customer, event_id: str, order_id: str, at: str, lines: list[dict[str, Any]],
          currency: str = "USD", **fields: Any) -> Applied:
    return c.apply("order.placed", event_id, at, order_id=order_id, currency=currency,
                   lines=lines, **fields)


def test_revenue_discount_and_cost_with_the_default_margin() -> None:
    c = Customer()
    order(c, "e1", "o1", "2026-04-01T00:00:00Z", [
        {"sku": "a", "quantity": 3, "unit_price": "9.99", "list_price": "12.00"},
        {"sku": "b", "quantity": 1, "unit_price": "20.00", "unit_cost": "5.00"},
    ])
    p = c.profile()
    assert p["revenue"] == "49.97"  # 3 x 9.99 + 20
    assert p["discounts"] == "6.03"  # 3 x 2.01
    assert p["gross_margin"] == "23.99"  # 49.97 - (29.97 x 0.7 + 5) = 49.97 - 25.979
    assert p["net_profit"] == "23.99"


def test_foreign_currency_converts_at_the_rate_fixed_when_placed() -> None:
    c = Customer()
    order(c, "e1", "o1", "2026-04-01T00:00:00Z",
          [{"sku": "a", "quantity": 1, "unit_price": "10.00", "unit_cost": "4.00"}],
          currency="EUR")
    c.apply("order.refunded", "e2", "2026-04-02T00:00:00Z", order_id="o1", amount="2.00")
    p = c.profile()
    assert (p["revenue"], p["gross_margin"], p["refunds"]) == ("11.00", "6.60", "2.20")


def test_unknown_currency_is_rejected_and_nothing_is_stored() -> None:
    c = Customer()
    result = order(c, "e1", "o1", "2026-04-01T00:00:00Z",
                   [{"sku": "a", "quantity": 1, "unit_price": 1}], currency="JPY")
    assert result.outcome == "dead_letter"
    assert [r.code for r in result.rejected] == ["unknown_currency"]
    assert not result.changed


def test_a_late_arriving_older_amendment_does_not_win() -> None:
    c = Customer()
    order(c, "e1", "o1", "2026-04-01T00:00:00Z", [{"sku": "a", "quantity": 1, "unit_price": 10}])
    c.apply("order.amended", "e3", "2026-04-03T00:00:00Z", order_id="o1",
            lines=[{"sku": "a", "quantity": 3, "unit_price": 10}])
    c.apply("order.amended", "e2", "2026-04-02T00:00:00Z", order_id="o1",
            lines=[{"sku": "a", "quantity": 2, "unit_price": 10}])
    p = c.profile()
    assert (p["revenue"], p["amended_orders"], p["amend_rate"]) == ("30.00", 1, 1.0)


def test_cancelled_orders_leave_every_total_and_the_purchase_days() -> None:
    c = Customer()
    order(c, "e1", "o1", "2026-04-01T00:00:00Z", [{"sku": "a", "quantity": 1, "unit_price": 10}])
    order(c, "e2", "o2", "2026-04-05T00:00:00Z", [{"sku": "a", "quantity": 1, "unit_price": 99}])
    c.apply("order.cancelled", "e3", "2026-04-06T00:00:00Z", order_id="o2")
    again = c.apply("order.cancelled", "e4", "2026-04-07T00:00:00Z", order_id="o2")
    assert [r.code for r in again.rejected] == ["order_already_cancelled"]
    p = c.profile()
    assert (p["orders"], p["revenue"], p["cancelled_orders"], p["cancel_rate"]) == (
        1, "10.00", 1, 0.5)
    assert (p["frequency"], p["recency_days"]) == (0, 0)


def test_refunds_are_bounded_and_counted_once_even_after_the_memory_forgets() -> None:
    c = Customer()
    order(c, "e1", "o1", "2026-04-01T00:00:00Z", [{"sku": "a", "quantity": 1, "unit_price": 10}])
    c.apply("order.refunded", "r1", "2026-04-02T00:00:00Z", order_id="o1", amount="4")
    too_much = c.apply("order.refunded", "r2", "2026-04-03T00:00:00Z", order_id="o1",
                       amount="6.01")
    assert [r.code for r in too_much.rejected] == ["refund_exceeds_order"]
    # r1 again, 60 days later: the event-id memory has forgotten it, the order has not.
    later = NOW + timedelta(days=60)
    c.apply("email.sent", "x", "2026-06-30T00:00:00Z", now=later, message_id="m")
    assert id_hash("r1") not in c.state.seen  # type: ignore[union-attr]
    c.apply("order.refunded", "r1", "2026-04-02T00:00:00Z", now=later, order_id="o1",
            amount="4")
    assert c.profile()["refunds"] == "4.00"


def test_redelivered_event_is_a_duplicate() -> None:
    c = Customer()
    order(c, "e1", "o1", "2026-04-01T00:00:00Z", [{"sku": "a", "quantity": 1, "unit_price": 1}])
    again = order(c, "e1", "o1", "2026-04-01T00:00:00Z",
                  [{"sku": "a", "quantity": 1, "unit_price": 1}])
    assert (again.outcome, again.changed) == ("duplicate", False)
    other_id = order(c, "e2", "o1", "2026-04-01T00:00:00Z",
                     [{"sku": "a", "quantity": 1, "unit_price": 1}])
    assert [r.code for r in other_id.rejected] == ["order_exists"]


def test_parked_events_apply_in_event_time_order_when_the_order_arrives() -> None:
    c = Customer()
    assert c.apply("order.paid", "p", "2026-04-03T00:00:00Z", order_id="o1").outcome == "parked"
    c.apply("order.amended", "a", "2026-04-02T00:00:00Z", order_id="o1",
            lines=[{"sku": "a", "quantity": 2, "unit_price": 10}])
    assert c.state is not None and c.state.next_deadline() == NOW + timedelta(days=7)
    placed = order(c, "o", "o1", "2026-04-01T00:00:00Z",
                   [{"sku": "a", "quantity": 1, "unit_price": 10}],
                   payment_due_at="2026-04-02T12:00:00Z")
    assert (placed.outcome, placed.unparked) == ("applied", 2)
    p = c.profile()
    assert (p["revenue"], p["paid_orders"], p["late_payments"]) == ("20.00", 1, 1)
    assert c.state.parked == [] and c.state.next_deadline() is None  # type: ignore[union-attr]


def test_parked_events_expire_into_dead_letters_with_their_source() -> None:
    c = Customer()
    c.apply("order.cancelled", "x", "2026-04-03T00:00:00Z", order_id="ghost")
    assert c.state is not None
    assert expire_parked(c.state, NOW + timedelta(days=7) - timedelta(seconds=1)) == []
    expired = expire_parked(c.state, NOW + timedelta(days=7))
    assert [(r.code, r.source.value) for r in expired] == [
        ("orphan_expired", record("order.cancelled", "x", "cust", "2026-04-03T00:00:00Z",
                                  order_id="ghost")[2])]
    assert c.state.parked == []


def test_erasure_keeps_only_a_marker_that_ignores_older_events() -> None:
    c = Customer()
    order(c, "e1", "o1", "2026-04-01T00:00:00Z", [{"sku": "a", "quantity": 1, "unit_price": 1}])
    erased = c.apply("customer.erasure_requested", "x", "2026-04-10T00:00:00Z")
    assert erased.erased and c.state is not None and not c.state.has_profile
    assert c.state == CustomerState("cust", erased_at=datetime(2026, 4, 10, tzinfo=UTC))
    late = order(c, "e1", "o1", "2026-04-01T00:00:00Z",
                 [{"sku": "a", "quantity": 1, "unit_price": 1}])
    assert (late.outcome, late.changed) == ("duplicate", False)
    fresh = c.apply("email.sent", "e9", "2026-04-11T00:00:00Z", message_id="m")
    assert fresh.outcome == "applied" and c.profile()["emails_sent"] == 1
    assert c.profile()["orders"] == 0


def test_ticket_status_follows_event_time_not_arrival_order() -> None:
    c = Customer()
    c.apply("ticket.resolved", "t2", "2026-04-02T00:00:00Z", ticket_id="t")
    c.apply("ticket.opened", "t1", "2026-04-01T00:00:00Z", ticket_id="t", priority="high")
    p = c.profile()
    assert (p["tickets_total"], p["tickets_open"], p["oldest_open_ticket_at"]) == (1, 0, None)
    c.apply("ticket.reopened", "t3", "2026-04-03T00:00:00Z", ticket_id="t")
    p = c.profile()
    assert (p["tickets_open"], p["oldest_open_ticket_at"]) == (1, "2026-04-01T00:00:00Z")


def test_tickets_90d_counts_by_opening_time_before_as_of() -> None:
    c = Customer()
    c.apply("ticket.opened", "t1", "2026-01-01T00:00:00Z", ticket_id="old")
    c.apply("ticket.opened", "t2", "2026-04-01T00:00:00Z", ticket_id="new")
    assert c.profile(as_of=datetime(2026, 4, 15, tzinfo=UTC))["tickets_90d"] == 1
    assert c.profile(as_of=datetime(2026, 3, 1, tzinfo=UTC))["tickets_90d"] == 1


def test_open_rate_counts_each_message_once() -> None:
    c = Customer()
    for n in range(4):
        c.apply("email.sent", f"s{n}", "2026-04-01T00:00:00Z", message_id=f"m{n}")
    for n in range(3):
        c.apply("email.opened", f"o{n}", f"2026-04-0{n + 2}T00:00:00Z", message_id="m0")
    p = c.profile()
    assert (p["emails_opened"], p["open_rate"], p["last_open_at"]) == (
        1, 0.25, "2026-04-04T00:00:00Z")


def test_purchase_statistics_use_distinct_utc_days() -> None:
    c = Customer()
    line = [{"sku": "a", "quantity": 1, "unit_price": 10}]
    order(c, "1", "o1", "2026-01-01T23:00:00-02:00", line)  # 2026-01-02 UTC
    order(c, "2", "o2", "2026-01-02T05:00:00Z", line)  # same UTC day
    order(c, "3", "o3", "2026-01-12T00:00:00Z", line)
    order(c, "4", "o4", "2026-01-22T00:00:00Z",
          [{"sku": "a", "quantity": 3, "unit_price": 10}])
    c.apply("order.refunded", "5", "2026-01-23T00:00:00Z", order_id="o4", amount=5)
    p = c.profile(as_of=datetime(2026, 2, 1, 12, tzinfo=UTC))
    assert (p["frequency"], p["recency_days"], p["age_days"]) == (2, 20, 30)
    assert p["monetary_value"] == "17.50"  # (10 + 25) / 2
    assert p["first_order_at"] == "2026-01-02T01:00:00Z"


def test_no_purchase_means_null_statistics() -> None:
    c = Customer()
    c.apply("email.sent", "s", "2026-04-01T00:00:00Z", message_id="m")
    p = c.profile()
    assert [p[k] for k in ("frequency", "recency_days", "age_days", "monetary_value")] == [
        None] * 4


@pytest.mark.parametrize(("amount", "cents"), [
    ("2.665", "2.67"), ("2.675", "2.68"), ("-5.005", "-5.01"), ("0.004999", "0.00"),
    ("-0.001", "0.00"), ("1e2", "100.00")])
def test_money_rounds_half_up_to_cents(amount: str, cents: str) -> None:
    assert money(Decimal(amount)) == cents


# --- bounds: no valid message can overflow or grow a state without limit -------------------

def test_messages_over_the_size_limit_are_rejected_before_parsing() -> None:
    topic, key, value = record("email.sent", "e", "cust", "2026-04-01T00:00:00Z",
                               message_id="m", note="x" * 2_000)
    assert not isinstance(decode(topic, key, value, max_bytes=len(key) + len(value)), Invalid)
    too_large = decode(topic, key, value, max_bytes=len(key) + len(value) - 1)
    assert isinstance(too_large, Invalid)
    assert too_large.code == "message_too_large"


def test_an_event_more_than_a_day_ahead_of_its_arrival_is_a_bad_timestamp() -> None:
    topic, key, value = record("email.sent", "e", "cust", "2026-05-03T00:00:00Z", message_id="m")
    received = datetime(2026, 5, 2, tzinfo=UTC)
    assert not isinstance(decode(topic, key, value, received_at=received), Invalid)
    ahead = decode(topic, key, value, received_at=received - timedelta(seconds=1))
    assert isinstance(ahead, Invalid)
    assert ahead.code == "bad_timestamp"


def test_an_erasure_dated_in_the_future_is_refused() -> None:
    """It would silence the customer's events until then."""
    topic, key, value = record("customer.erasure_requested", "x", "cust", "2026-05-02T00:05:00Z")
    received = datetime(2026, 5, 2, tzinfo=UTC)
    assert not isinstance(decode(topic, key, value, received_at=received), Invalid)  # skew
    ahead = decode(topic, key, value, received_at=received - timedelta(seconds=1))
    assert isinstance(ahead, Invalid)
    assert (ahead.code, "future" in ahead.message) == ("bad_timestamp", True)


def test_a_key_twice_in_one_object_is_invalid_json() -> None:
    value = (b'{"event_id": "e", "type": "email.sent", "customer_id": "cust", '
             b'"occurred_at": "2026-05-01T00:00:00Z", "message_id": "m", "message_id": "n"}')
    decoded = decode("email-events", b"cust", value)
    assert isinstance(decoded, Invalid)
    assert decoded.code == "invalid_json"
    line = (b'{"event_id": "e", "type": "order.placed", "customer_id": "cust", '
            b'"occurred_at": "2026-05-01T00:00:00Z", "order_id": "o", "currency": "USD", '
            b'"lines": [{"sku": "s", "quantity": 1, "unit_price": "1", "unit_price": "9"}]}')
    assert isinstance(decode("orders", b"cust", line), Invalid)


def test_a_missing_occurred_at_is_a_schema_violation_not_a_bad_timestamp() -> None:
    decoded = decode("erasure-requests", b"c", b"{}")
    assert isinstance(decoded, Invalid)
    assert decoded.code == "schema_violation"


def test_parked_events_are_bounded_in_number_and_bytes() -> None:
    bounded = dataclasses.replace(RULES, max_parked=3, max_parked_bytes=1_000)
    state: CustomerState | None = None
    outcomes = []
    for n in range(5):
        event, source = parse("order.refunded", f"r{n}", "2026-04-01T00:00:00Z",
                              order_id=f"unknown-{n}", amount="1.00")
        state, applied = apply_event(state, event, source, NOW, bounded)
        outcomes.append((applied.outcome, [r.code for r in applied.rejected]))
    assert outcomes == [("parked", [])] * 3 + [("dead_letter", ["too_many_parked"])] * 2
    assert state is not None and len(state.parked) == 3
    big, source = parse("order.cancelled", "big", "2026-04-01T00:00:00Z", order_id="u",
                        note="x" * 600)
    state, applied = apply_event(CustomerState(customer_id="cust"), big, source, NOW, bounded)
    assert applied.outcome == "parked"
    again, source = parse("order.cancelled", "big2", "2026-04-01T00:00:00Z", order_id="u",
                          note="x" * 600)
    state, applied = apply_event(state, again, source, NOW, bounded)
    assert [r.code for r in applied.rejected] == ["too_many_parked"]
    assert id_hash("big2") not in state.seen  # a dead letter is not remembered as applied


def test_money_of_any_finite_amount_rounds_without_error() -> None:
    assert money(Decimal("1e30")) == "1" + "0" * 30 + ".00"
    assert money(Decimal("123456789012345678901234567.895")) == (
        "123456789012345678901234567.90")
