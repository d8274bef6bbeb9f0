"""Time-driven work without new events for the customer: a parked order event becomes an
``orphan_expired`` dead letter once its 7 days are up, on the event clock, moved by other
customers' events on the same partition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from harness.kafka import event, neighbours, produce, read_at_least, read_topic

pytestmark = pytest.mark.kafka


def test_orphan_expires_on_the_event_clock(make_worker: Any, kafka_bootstrap: str,
                                           namespace: str) -> None:
    worker = make_worker("w1", VALUESTREAM_CLOCK="event")
    prefix = f"{namespace}-"
    grace, heidi = neighbours("frank", 4, "clock", count=2)
    orphan = event("order.paid", "p1", "frank", "2026-06-01T00:00:00Z", order_id="never")
    started = datetime.now(UTC)
    produce(kafka_bootstrap, prefix, [
        orphan,
        # Other customers' events move the partition's clock: 6 days on, still parked.
        event("email.sent", "g1", grace, "2026-06-07T00:00:00Z", message_id="m1"),
    ])
    worker.wait(lambda: worker.events_by_outcome().get("applied") == 1, 30, "grace's event")
    assert worker.events_by_outcome()["parked"] == 1
    assert worker.metric("valuestream_dead_letters_total", code="orphan_expired") == 0
    assert read_topic(kafka_bootstrap, f"{prefix}dead-letters") == []

    produce(kafka_bootstrap, prefix, [
        event("email.sent", "h1", heidi, "2026-06-08T00:00:01Z", message_id="m2"),
    ])
    letters = read_at_least(kafka_bootstrap, f"{prefix}dead-letters", 1)
    assert len(letters) == 1
    letter = orjson.loads(letters[0].value)
    assert letter["error"]["code"] == "orphan_expired"
    assert letter["key"] == "frank"
    assert letter["value"].encode() == orphan[2]  # the original bytes
    received = datetime.fromisoformat(letter["received_at"])  # when it was written
    assert started - timedelta(seconds=1) <= received <= datetime.now(UTC)
    assert worker.profile("frank")[1]["paid_orders"] == 0
