"""Hostile input mixed into valid traffic: the worker never exits or stalls, every message is
accounted for exactly once, nothing raises (no ``processing_error``), each bound ends in its
own dead-letter code, and the valid customers' profiles are exact to the cent."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest

from harness.kafka import Record, event, produce, read_at_least
from harness.worker import Worker

pytestmark = pytest.mark.kafka
START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=20)
LIMITS = {  # lowered, so that a test can reach each bound with a few thousand messages
    "VALUESTREAM_MAX_STATE_BYTES": "131072",
    "VALUESTREAM_MAX_PARKED_BYTES": "65536",
}
LONG_ID = "x" * 120
BUSY = 8_000


def at(seconds: int) -> str:
    return (START + timedelta(seconds=seconds)).isoformat()


def raw(topic: str, key: str | bytes | None, value: bytes | None) -> Record:
    return topic, key.encode() if isinstance(key, str) else key, value


def order_json(customer: str, n: int, **changes: Any) -> bytes:
    body = {"event_id": f"{customer}-bad-{n}", "type": "order.placed", "customer_id": customer,
            "occurred_at": at(n), "order_id": f"bad-{n}", "currency": "USD",
            "lines": [{"sku": "s", "quantity": 1, "unit_price": "1.00"}], **changes}
    return orjson.dumps(body)


def hostile(rng: random.Random, n: int) -> tuple[Record, str]:
    """One hostile message and the dead-letter code it must end in."""
    customer = f"h{n % 97}"
    kind = n % 15
    if kind == 0:
        return raw("orders", customer, rng.randbytes(rng.randint(1, 400))), "invalid_json"
    if kind == 1:
        return raw("orders", customer, b"[" * rng.randint(300, 50_000)), "invalid_json"
    if kind == 2:
        line = {"sku": "s", "quantity": 1, "unit_price": rng.choice(
            [1e300, "99999999999999999999999999999.99", "1e3", "-1", "12.34567"])}
        return raw("orders", customer, order_json(customer, n, lines=[line])), "schema_violation"
    if kind == 3:
        line = {"sku": "s", "quantity": rng.choice([10**6 + 1, 1e30, 0]), "unit_price": "1"}
        return raw("orders", customer, order_json(customer, n, lines=[line])), "schema_violation"
    if kind == 4:
        when = rng.choice(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1969-07-20T20:17:00Z"])
        return raw("orders", customer, order_json(customer, n, occurred_at=when)), "bad_timestamp"
    if kind == 5:  # from the future: more than a day after it is received
        when = (datetime.now(UTC) + timedelta(days=rng.randint(2, 300_000))).isoformat()
        return (raw("erasure-requests", customer, orjson.dumps(
            {"event_id": f"erase-{n}", "type": "customer.erasure_requested",
             "customer_id": customer, "occurred_at": when})), "bad_timestamp")
    if kind == 6:
        return raw("orders", f"other-{n}", order_json(customer, n)), "key_mismatch"
    if kind == 7:
        return raw("email-events", customer, None), "invalid_json"
    if kind == 8:
        return raw("support-tickets", customer, orjson.dumps({"type": "ticket.opened"})), \
            "schema_violation"
    if kind == 9:
        return raw("orders", customer, orjson.dumps([1, 2, 3])), "schema_violation"
    if kind == 10:
        return raw("orders", customer, order_json(customer, n, type="order.shipped")), \
            "unknown_type"
    if kind == 11:
        return raw("orders", customer, order_json(customer, n, lines=[])), "schema_violation"
    if kind == 12:
        return raw("email-events", customer, b'{"event_id": "\xff\xfe"}'), "invalid_json"
    if kind == 13:  # a key twice: which value was meant is unknown
        return raw("orders", customer, order_json(customer, n)[:-1] + b',"order_id":"x"}'), \
            "invalid_json"
    return raw("orders", customer, order_json(customer, n, currency="XXX")), "unknown_currency"


def test_hostile_input_is_contained(make_worker: Callable[..., Worker], kafka_bootstrap: str,
                                    namespace: str) -> None:
    rng = random.Random(7)
    expected: Counter[str] = Counter()
    records: list[Record] = []

    # Poison pills. A 912 KB amendment of an unknown order, a huge key, and a binary giant:
    # each is larger than any accepted message.
    amendment = orjson.dumps({
        "event_id": "big-1", "type": "order.amended", "customer_id": "giant",
        "occurred_at": at(1), "order_id": "unknown",
        "lines": [{"sku": "s" * 100, "quantity": 1, "unit_price": "1"}] * 7_000})
    assert len(amendment) > 900_000
    giants = [raw("orders", "giant", amendment), raw("orders", "k" * 300_000, b"{}"),
              raw("email-events", "giant", rng.randbytes(900_000))]
    records += giants
    expected["message_too_large"] += len(giants)
    # A flood of refunds with long ids for unknown orders on one customer: 100 wait, the
    # rest are refused.
    records += [event("order.refunded", f"{LONG_ID}-r{n}", "flood", at(10 + n),
                      order_id=f"{LONG_ID}-o{n}", amount="1.00") for n in range(1_000)]
    expected["too_many_parked"] += 900
    # Parked bytes: 25 KB amendments of unknown orders; two fit in 64 KiB, three do not.
    note = "n" * 25_000
    records += [event("order.amended", f"a{n}", "hoarder", at(n), order_id=f"later-{n}",
                      lines=[{"sku": "s", "quantity": 1, "unit_price": "1"}], note=note)
                for n in range(5)]
    expected["too_many_parked"] += 3
    # A customer whose state grows past 128 KiB: distinct emails, about 21 bytes each.
    records += [event("email.sent", f"mail-{n}", "busy", at(n), message_id=f"m{n}")
                for n in range(BUSY)]
    for n in range(3_000):
        record, code = hostile(rng, n)
        records.append(record)
        expected[code] += 1

    # Valid traffic, mixed in: exact totals per customer.
    valid: dict[str, Decimal] = {}
    for n in range(600):
        customer = f"v{n % 60}"
        # Profiles still show money as JSON numbers: totals stay below 2^53 cents.
        price = Decimal(rng.randint(1, 10**8)) / 100
        quantity = rng.randint(1, 100)
        valid[customer] = valid.get(customer, Decimal(0)) + price * quantity
        records.insert(rng.randint(0, len(records)), event(
            "order.placed", f"ok-{n}", customer, at(100 + n), order_id=f"ok-{n}",
            currency="USD", lines=[{"sku": "s", "quantity": quantity, "unit_price": str(price)}]))

    worker = make_worker("w1", **LIMITS)
    produce(kafka_bootstrap, f"{namespace}-", records)
    worker.wait_settled(240)

    assert worker.processed() == len(records)  # each message accounted for exactly once
    assert worker.metric("valuestream_processing_errors_total") == 0
    assert worker.metric("valuestream_records_skipped_total") == 0
    for customer, revenue in valid.items():
        status, profile = worker.profile(customer)
        assert status == 200
        assert profile["revenue"] == f"{revenue.quantize(Decimal('0.01')):f}"

    letters = [orjson.loads(r.value) for r in read_at_least(
        kafka_bootstrap, f"{namespace}-dead-letters", sum(expected.values()), timeout=60)]
    codes = Counter(letter["error"]["code"] for letter in letters)
    assert codes["processing_error"] == 0
    busy_refused = codes.pop("state_too_large")
    assert {code: codes[code] for code in expected} == dict(expected)
    assert sum(codes.values()) == sum(expected.values())

    # The state bound: what was refused is exactly what the profile does not count.
    busy_applied = BUSY - busy_refused
    assert 0 < busy_refused < BUSY
    assert worker.profile("busy")[1]["emails_sent"] == busy_applied
    assert worker.profile("flood")[1]["orders"] == 0

    # Dead letters of giants keep a bounded copy, the size and the hash of the original.
    for letter in (d for d in letters if d["error"]["code"] == "message_too_large"):
        assert letter["truncated"] is True
        assert len(orjson.dumps(letter)) < 20_000
    amended = next(d for d in letters if d["key"] == "giant" and not d["value_base64"])
    assert amended["value_bytes"] == len(amendment)
    assert amended["value_sha256"] == hashlib.sha256(amendment).hexdigest()
    assert amendment.startswith(amended["value"].encode())
