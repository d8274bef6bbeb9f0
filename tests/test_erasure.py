"""Erasure within a bound: with the bound set to seconds, every record naming an erased
customer leaves every topic, the changelog and every file of the worker's data directory,
and so does the erasure marker once it expires.

The customer's id and a note carried in every one of their events (an extra field, a ticket
id, a parked refund and a rejected event: their original bytes) are first seen in every
place that can hold them; the erasure is then processed while other customers' traffic goes
on, as in a live shop: Kafka rolls a segment, and so compacts or deletes it, only when
records arrive after it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from harness.kafka import Record, event, neighbours, produce, read_topic
from harness.worker import Worker, http_get
from streams.codec import marker_name
from streams.settings import Settings
from streams.topics import INPUT_TOPICS, topic_specs

pytestmark = pytest.mark.kafka
BOUND = timedelta(seconds=40)
SECRET = "erasure-test-secret-0123456789"
VICTIM = "alice.smith@example.com"
NOTE = "NOTE-7f3a9c1e-only-alice-ever-wrote-this"
PARTITIONS = 4
DAY0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=200)
OUTPUTS = ("customer-value", "churn-risk", "follow-ups", "dead-letters")


def at(days: float) -> str:
    return (DAY0 + timedelta(days=days)).isoformat().replace("+00:00", "Z")


def victim_history() -> list[Record]:
    """Three orders (then silence: churn risk rises), a ticket whose id carries the note, a
    refund for an order never placed (parked with its original bytes, then expired) and an
    order without lines (a dead letter with its original bytes); the note in every event."""
    note = {"note": NOTE}
    records = [event("order.placed", f"a-o{n}", VICTIM, at(day), order_id=f"o{n}",
                     currency="USD", lines=[{"sku": "tea", "quantity": 1, "unit_price": "12.00"}],
                     **note) for n, day in enumerate((0, 10, 20))]
    records += [
        event("ticket.opened", "a-t1", VICTIM, at(21), ticket_id=f"t-{NOTE}", **note),
        event("order.refunded", "a-r1", VICTIM, at(22), order_id="never-placed",
              amount="5.00", **note),
        event("order.placed", "a-bad", VICTIM, at(23), order_id="o9", currency="USD",
              lines=[], **note),
    ]
    return records


def traffic(day: float, tag: str) -> list[Record]:
    """One event per clockwork customer: every partition moves on (event clock, segments)."""
    return [event("email.sent", f"{tag}-{c}", c, at(day), message_id=f"m-{tag}-{c}")
            for c in CLOCKWORK]


CLOCKWORK = sorted({c for p in range(PARTITIONS)
                    for c in neighbours(f"seed{p}", PARTITIONS, "clock", count=2)})


class Collector:
    """Every record written to the given topics from now on (a background consumer), so
    that what was written is known even after retention removed it."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.records: list[Any] = []
        self._stop = threading.Event()
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","),
                                       enable_auto_commit=False, auto_offset_reset="earliest")
        self._consumer.assign([TopicPartition(t, p) for t in topics for p in range(PARTITIONS)])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for batch in self._consumer.poll(timeout_ms=200).values():
                self.records.extend(batch)

    def topics_naming(self, *needles: bytes) -> set[str]:
        return {r.topic for r in list(self.records) if _names(r, needles)}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


def _names(record: Any, needles: tuple[bytes, ...]) -> bool:
    return any(n in (record.key or b"") or n in (record.value or b"") for n in needles)


def files_naming(directory: Path, *needles: bytes) -> list[str]:
    return [str(path.relative_to(directory)) for path in directory.rglob("*")
            if path.is_file() and any(n in path.read_bytes() for n in needles)]


def broker_checks_every(bootstrap: str) -> timedelta:
    """The longest of the broker's retention and cleaner check intervals."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    try:
        broker = str(admin.describe_cluster()["brokers"][0]["broker_id"])
        names = ["log.retention.check.interval.ms", "log.cleaner.backoff.ms"]
        found = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, broker, names)],
                                       config_filter="all")["broker"][broker]
        return timedelta(milliseconds=max(int(found[name]["value"]) for name in names))
    finally:
        admin.close()


def test_an_erased_customer_leaves_every_topic_and_file_within_the_bound(
        make_worker: Any, kafka_bootstrap: str, namespace: str) -> None:
    if (interval := broker_checks_every(kafka_bootstrap)) > BOUND / 10:
        pytest.skip(f"the broker checks retention every {interval}: too seldom for a bound of "
                    f"{BOUND} (the project's local broker checks every second)")
    prefix = f"{namespace}-"
    changelog = f"{namespace}-{namespace}-customer-state"
    topics = [f"{prefix}{t}" for t in (*INPUT_TOPICS, *OUTPUTS)] + [changelog]
    worker: Worker = make_worker("w1", VALUESTREAM_CLOCK="event",
                                 VALUESTREAM_ERASURE_BOUND=f"{BOUND.total_seconds():.0f}s",
                                 VALUESTREAM_ERASURE_KEY=SECRET,
                                 VALUESTREAM_PARTITIONS=str(PARTITIONS))
    seen = Collector(kafka_bootstrap, topics)
    needles = (VICTIM.encode(), NOTE.encode())
    marker = marker_name(VICTIM, SECRET.encode())
    try:
        history = victim_history()
        for day in range(1, 150):
            history += traffic(day, f"d{day}")
        produce(kafka_bootstrap, prefix, sorted(history, key=_occurred_at))
        worker.wait(lambda: worker.profile(VICTIM)[0] == 200, 60, "the victim's profile")
        expected = {*(f"{prefix}{t}" for t in (*INPUT_TOPICS[:2], *OUTPUTS)), changelog}
        worker.wait(lambda: expected <= seen.topics_naming(*needles), 60,
                    "the victim in every output, the changelog and the inputs")
        worker.wait(lambda: files_naming(worker.data_dir, *needles), 30,
                    "the victim in the worker's files")

        produce(kafka_bootstrap, prefix, [event("customer.erasure_requested", "erase-1",
                                                VICTIM, at(150))])
        erased = datetime.now(UTC)
        worker.wait(lambda: worker.profile(VICTIM)[0] == 404, 30, "the profile gone")
        worker.wait(lambda: any(r.key == marker for r in seen.records), 30,
                    "the erasure marker on the changelog")

        day = 151.0
        leftovers: dict[str, Any] = {}

        def clean() -> bool:
            nonlocal day
            produce(kafka_bootstrap, prefix, traffic(day, f"late{day}"))
            day += 0.01
            leftovers.clear()
            for topic in topics:
                found = [r for r in read_topic(kafka_bootstrap, topic)
                         if _names(r, needles) or r.key == marker]
                if found:
                    leftovers[topic] = len(found)
            files = files_naming(worker.data_dir, *needles, marker)
            if files:
                leftovers["files"] = files
            return not leftovers

        worker.wait(clean, 3 * BOUND.total_seconds(), "no trace of the victim", interval=0.5)
        took = datetime.now(UTC) - erased
        assert took <= BOUND, f"the last trace went {took} after the erasure ({leftovers})"
        # The other customers are still there, and the id can start again from nothing.
        assert worker.profile(CLOCKWORK[0])[0] == 200
        produce(kafka_bootstrap, prefix, [event("order.placed", "again-1", VICTIM, at(160),
                                                order_id="n1", currency="USD",
                                                lines=[{"sku": "tea", "quantity": 1,
                                                        "unit_price": "3.00"}])])
        worker.wait(lambda: worker.profile(VICTIM)[0] == 200, 30, "a new profile")
        status, profile = http_get(f"{worker.url}/customers/{VICTIM}")
        assert status == 200 and profile["orders"] == 1
    finally:
        seen.close()


def _occurred_at(record: Record) -> bytes:
    value = record[2] or b""
    start = value.index(b'"occurred_at":"') + 15
    return value[start:start + 20]


def test_topics_applies_the_bound_to_existing_topics(kafka_bootstrap: str,
                                                      namespace: str) -> None:
    def topics(bound: str) -> str:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
               "VALUESTREAM_TOPIC_PREFIX": f"{namespace}-", "VALUESTREAM_APP_ID": namespace,
               "VALUESTREAM_ERASURE_BOUND": bound}
        done = subprocess.run([sys.executable, "-m", "streams.cli", "topics"], env=env,
                              capture_output=True, text=True, timeout=120, check=True)
        return done.stdout

    def specs(bound: str) -> dict[str, dict[str, str]]:
        settings = Settings.from_env({"VALUESTREAM_TOPIC_PREFIX": f"{namespace}-",
                                      "VALUESTREAM_APP_ID": namespace,
                                      "VALUESTREAM_ERASURE_BOUND": bound})
        return {spec.name: dict(spec.config) for spec in topic_specs(settings)}

    # The topics whose settings come from the bound: all but model-params and co-purchases
    # (no customer's data in them).
    bound_by = {name for name, config in specs("30d").items() if config != specs("10d")[name]}
    assert len(bound_by) == len(specs("30d")) - 2
    first = topics("30d")
    assert f"created {len(specs('30d'))} topic(s)" in first
    assert "updated the settings of 0 topic(s)" in first
    assert "updated the settings of 0 topic(s)" in topics("30d")  # nothing to do
    second = topics("10d")
    assert "created 0 topic(s)" in second
    assert f"updated the settings of {len(bound_by)} topic(s)" in second
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap.split(","))
    try:
        day = 24 * 3600 * 1000
        names = {f"{namespace}-orders": {"retention.ms": 5 * day, "segment.ms": day},
                 f"{namespace}-customer-value": {"max.compaction.lag.ms": 2 * day,
                                                 "delete.retention.ms": 2 * day,
                                                 "segment.ms": day},
                 f"{namespace}-{namespace}-customer-state": {"segment.ms": 600_000}}
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, list(expected))
             for name, expected in names.items()], config_filter="all")["topic"]
        for name, expected in names.items():
            assert {k: int(described[name][k]["value"]) for k in expected} == expected
    finally:
        admin.close()
