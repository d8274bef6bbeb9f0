"""Time-driven work without new events for the customer: a parked order event becomes an
``orphan_expired`` dead letter once its 7 days are up, on the event clock."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.helpers import event, produce, read_at_least, wait_for

pytestmark = pytest.mark.kafka


def ticks(worker: Any) -> float:
    return sum(v for (name, _), v in worker.metrics().items() if name == "valuestream_ticks_total")


def test_orphan_expires_on_the_event_clock(make_worker: Any, kafka_bootstrap: str,
                                           namespace: str) -> None:
    worker = make_worker("w1", VALUESTREAM_CLOCK="event")
    prefix = f"{namespace}-"
    orphan = event("order.paid", "p1", "frank", "2026-06-01T00:00:00Z", order_id="never")
    produce(kafka_bootstrap, prefix, [
        orphan,
        # Other customers' events move the clock: 6 days on, the orphan is still parked.
        event("email.sent", "g1", "grace", "2026-06-07T00:00:00Z", message_id="m1"),
    ])
    wait_for(lambda: worker.events_by_outcome().get("applied") == 1, 30, "grace's event")
    ticks_then = ticks(worker)
    wait_for(lambda: ticks(worker) >= ticks_then + 2 * 4, 30, "two ticks on every partition")
    assert worker.events_by_outcome()["parked"] == 1
    assert worker.metrics().get(("valuestream_dead_letters_total", frozenset(
        {("topic", f"{prefix}orders"), ("code", "orphan_expired")}))) is None

    produce(kafka_bootstrap, prefix, [
        event("email.sent", "h1", "heidi", "2026-06-08T00:00:01Z", message_id="m2"),
    ])
    letters = read_at_least(kafka_bootstrap, f"{prefix}dead-letters", 1)
    assert len(letters) == 1
    letter = orjson.loads(letters[0].value)
    assert letter["error"]["code"] == "orphan_expired"
    assert letter["key"] == "frank"
    assert letter["value"].encode() == orphan[2]  # the original bytes
    assert letter["received_at"] == "2026-06-08T00:00:01Z"  # the event clock's now
    assert worker.profile("frank")[1]["paid_orders"] == 0
