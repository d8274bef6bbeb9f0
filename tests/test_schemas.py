"""The JSON Schema files and the processor's validator agree.

Every vector below is checked by both: a JSON Schema validator over the committed files,
and the processor's decoder. They must accept and reject the same messages, except for the
one documented rule JSON Schema cannot state (a line's list_price may not be below its
unit_price), which only the processor enforces.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from harness.kafka import schema_validator
from schemas.events import TOPICS
from schemas.export import documents, render, schema_path
from streams.decode import Invalid, decode

BASE = {"event_id": "e-1", "customer_id": "c-1", "occurred_at": "2026-01-02T03:04:05Z"}
LINE = {"sku": "s", "quantity": 1, "unit_price": "9.99"}


def ev(event_type: str, **fields: Any) -> dict[str, Any]:
    return {**BASE, "type": event_type, **fields}


def placed(**changes: Any) -> dict[str, Any]:
    return ev("order.placed", **{"order_id": "o", "currency": "USD", "lines": [LINE], **changes})


def line(**changes: Any) -> dict[str, Any]:
    return placed(lines=[{**LINE, **changes}])


# (topic, value, valid)
VECTORS: list[tuple[str, Any, bool]] = [
    ("orders", placed(), True),
    ("orders", placed(payment_due_at="2026-02-01T00:00:00+01:00"), True),
    ("orders", placed(unknown_field={"nested": True}), True),
    ("orders", line(unit_price=0), True),
    ("orders", line(unit_price=12), True),
    ("orders", line(unit_price="0.50", list_price="0.75", unit_cost="0.10"), True),
    ("orders", line(quantity=2.0), True),
    ("orders", line(quantity=0), False),
    ("orders", line(quantity=2.5), False),
    ("orders", line(quantity="2"), False),
    ("orders", line(unit_price=-1), False),
    ("orders", line(unit_price="-1"), False),
    ("orders", line(unit_price="1e3"), False),
    ("orders", line(unit_price=" 1.00"), False),
    ("orders", line(unit_price=True), False),
    ("orders", line(unit_price=None), False),
    ("orders", line(unit_cost=-0.01), False),
    ("orders", line(unit_price=-0.0), True),  # a negative zero is zero
    ("orders", line(unit_price="999999999999.9999"), True),
    ("orders", line(unit_price=999999999999.9999), True),
    ("orders", line(unit_price="1000000000000"), False),
    ("orders", line(unit_price=1e13), False),
    ("orders", line(unit_price=1e300), False),
    ("orders", line(unit_price="99999999999999999999999999999.99"), False),
    ("orders", line(unit_price="12.34567"), False),
    ("orders", line(unit_price=1e-300), True),  # a JSON number is its float's decimal
    ("orders", line(quantity=1_000_000), True),
    ("orders", line(quantity=1_000_001), False),
    ("orders", line(quantity=1e30), False),
    ("orders", placed(lines=[LINE] * 1_000), True),
    ("orders", placed(lines=[LINE] * 1_001), False),
    ("orders", {**placed(), "occurred_at": "1970-01-01T00:00:00Z"}, True),
    ("orders", {**placed(), "occurred_at": "2999-12-31T23:59:59Z"}, True),
    ("orders", {**placed(), "occurred_at": "1969-12-31T23:59:59Z"}, False),
    ("orders", {**placed(), "occurred_at": "0001-01-01T00:00:00Z"}, False),
    ("orders", {**placed(), "occurred_at": "9999-12-31T23:59:59Z"}, False),
    ("orders", placed(payment_due_at="9999-12-31T00:00:00Z"), False),
    ("orders", ev("order.refunded", order_id="o", amount="1000000000000.00"), False),
    ("orders", placed(lines=[]), False),
    ("orders", placed(currency="usd"), False),
    ("orders", placed(currency="US"), False),
    ("orders", placed(order_id=""), False),
    ("orders", placed(order_id="x" * 129), False),
    ("orders", {**placed(), "occurred_at": "2026-01-02T03:04:05"}, False),
    ("orders", {**placed(), "occurred_at": "yesterday"}, False),
    ("orders", {**placed(), "occurred_at": 1767323045}, False),
    ("orders", {**placed(), "occurred_at": "2026-01-02 03:04:05Z"}, False),
    ("orders", {**placed(), "occurred_at": "2026-01-02T03:04Z"}, False),
    ("orders", {**placed(), "occurred_at": "2026-01-02T03:04:05+0100"}, False),
    ("orders", {**placed(), "occurred_at": "2026-1-2T03:04:05Z"}, False),
    ("orders", {**placed(), "occurred_at": "2026-01-02t03:04:05z"}, True),
    ("orders", {**placed(), "occurred_at": "2026-01-02T03:04:05.123456-07:00"}, True),
    ("orders", placed(payment_due_at="2026-02-01"), False),
    ("orders", {k: v for k, v in placed().items() if k != "event_id"}, False),
    ("orders", {k: v for k, v in placed().items() if k != "type"}, False),
    ("orders", ev("order.shipped", order_id="o"), False),
    ("orders", ev("order.amended", order_id="o", lines=[LINE]), True),
    ("orders", ev("order.amended", order_id="o"), False),
    ("orders", ev("order.cancelled", order_id="o"), True),
    ("orders", ev("order.refunded", order_id="o", amount="0.01"), True),
    ("orders", ev("order.refunded", order_id="o", amount=5), True),
    ("orders", ev("order.refunded", order_id="o", amount=0), False),
    ("orders", ev("order.refunded", order_id="o", amount="0.00"), False),
    ("orders", ev("order.paid", order_id="o"), True),
    ("orders", ev("order.paid"), False),
    ("orders", [placed()], False),
    ("support-tickets", ev("ticket.opened", ticket_id="t"), True),
    ("support-tickets", ev("ticket.opened", ticket_id="t", priority="urgent"), True),
    ("support-tickets", ev("ticket.opened", ticket_id="t", priority="critical"), False),
    ("support-tickets", ev("ticket.resolved", ticket_id="t"), True),
    ("support-tickets", ev("ticket.reopened", ticket_id="t"), True),
    ("support-tickets", ev("ticket.rated", ticket_id="t", csat=5), True),
    ("support-tickets", ev("ticket.rated", ticket_id="t", csat=1.0), True),
    ("support-tickets", ev("ticket.rated", ticket_id="t", csat=0), False),
    ("support-tickets", ev("ticket.rated", ticket_id="t", csat=6), False),
    ("support-tickets", ev("ticket.rated", ticket_id="t", csat="5"), False),
    ("support-tickets", ev("ticket.rated", ticket_id="t"), False),
    ("support-tickets", ev("order.paid", order_id="o"), False),
    ("email-events", ev("email.sent", message_id="m"), True),
    ("email-events", ev("email.opened", message_id="m", campaign_id="c"), True),
    ("email-events", ev("email.clicked", message_id="m"), True),
    ("email-events", ev("email.bounced", message_id="m"), True),
    ("email-events", ev("email.unsubscribed", message_id="m"), True),
    ("email-events", ev("email.forwarded", message_id="m"), False),
    ("email-events", ev("email.sent"), False),
    ("email-events", ev("email.sent", message_id="m", campaign_id=7), False),
    ("erasure-requests", ev("customer.erasure_requested"), True),
    ("erasure-requests", ev("customer.erasure_requested", reason="gdpr"), True),
    ("erasure-requests", {**ev("customer.erasure_requested"), "customer_id": ""}, False),
]
PROCESSOR_ONLY: list[tuple[str, Any]] = [
    ("orders", line(unit_price="10.00", list_price="9.99")),
]


@pytest.fixture(scope="module")
def validators() -> dict[str, Draft202012Validator]:
    return {schema.topic: schema_validator(schema.topic) for schema in TOPICS}


def processor_accepts(topic: str, value: Any) -> bool:
    return not isinstance(decode(topic, b"c-1", orjson.dumps(value)), Invalid)


@pytest.mark.parametrize(("topic", "document"), sorted(documents().items()))
def test_committed_schema_files_match_the_models(topic: str, document: Any) -> None:
    assert schema_path(topic).read_bytes() == render(document), (
        "schemas/ is stale: run `make schemas`"
    )


@pytest.mark.parametrize(("topic", "value", "valid"), VECTORS)
def test_json_schema_and_processor_agree(
    validators: dict[str, Draft202012Validator], topic: str, value: Any, valid: bool
) -> None:
    assert validators[topic].is_valid(value) is valid
    assert processor_accepts(topic, value) is valid


@pytest.mark.parametrize(("topic", "value"), PROCESSOR_ONLY)
def test_rules_json_schema_cannot_state(
    validators: dict[str, Draft202012Validator], topic: str, value: Any
) -> None:
    assert validators[topic].is_valid(value)
    assert not processor_accepts(topic, value)


def test_date_time_format_is_checked() -> None:
    """Without a date-time checker the agreement above would be hollow."""
    checker = FormatChecker()
    assert not checker.conforms("2026-01-02T03:04:05", "date-time")
    assert checker.conforms("2026-01-02T03:04:05Z", "date-time")
