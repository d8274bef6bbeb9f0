"""Flow control: when one input topic runs far ahead of another in event time, the worker
pauses only the input that is ahead and keeps reading the one that holds it back, so a
large backlog of mixed topics is processed to the end (pausing the whole partition would
stall it for good)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harness.kafka import Record, event, produce
from harness.worker import Worker, application_env
from streams.settings import Settings
from streams.topics import ensure_topics

pytestmark = pytest.mark.kafka
START = datetime(2026, 1, 1, tzinfo=UTC)
EACH = 9_000  # per topic: more than the 5,000 an input may hold back


def backlog() -> list[Record]:
    """Small email events and large orders over the same hours: a fetch brings eight times
    more emails than orders, so the emails run ahead in event time."""
    lines = [{"sku": f"sku-{n}", "quantity": 1, "unit_price": "1.00"} for n in range(20)]
    records = []
    for n in range(EACH):
        at = (START + timedelta(seconds=n)).isoformat()
        records.append(event("email.sent", f"e{n}", f"c{n % 50}", at, message_id=f"m{n}"))
        records.append(event("order.placed", f"o{n}", f"c{n % 50}", at, order_id=f"o{n}",
                             currency="USD", lines=lines))
    return records


def test_a_topic_far_ahead_does_not_stall_the_partition(make_worker: Callable[..., Worker],
                                                        kafka_bootstrap: str,
                                                        namespace: str) -> None:
    records = backlog()
    settings = Settings.from_env(application_env(kafka_bootstrap, namespace, Path("unused"),
                                                  VALUESTREAM_PARTITIONS="1"))
    ensure_topics(settings)  # one partition: everything in a single worker task
    produce(kafka_bootstrap, f"{namespace}-", records, fast=True)  # all there at the start
    worker = make_worker("w1", VALUESTREAM_PARTITIONS="1")
    worker.wait_settled(180)
    assert worker.events_by_outcome() == {"applied": len(records)}
    assert worker.metric("valuestream_late_events_total") == 0
    status, profile = worker.profile("c7")
    assert status == 200
    assert (profile["orders"], profile["emails_sent"]) == (EACH // 50, EACH // 50)
