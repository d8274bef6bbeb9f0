"""Producing input events and reading topics on a real broker."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import orjson
from jsonschema import Draft202012Validator, FormatChecker
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.partitioner.default import murmur2

from harness.waiting import wait_for
from schemas.events import TOPIC_OF_TYPE
from schemas.export import schema_path
from streams.clients import sync_options
from streams.settings import Settings

Record = tuple[str, bytes | None, bytes | None]  # topic (without prefix), key, value


def produce(bootstrap: str, prefix: str, records: Iterable[Record], fast: bool = False) -> int:
    """Send records in the order given (per topic and key, order is kept); return the count
    once the broker has them all. ``fast`` batches more (for loading large volumes)."""
    options: dict[str, Any] = (
        {"acks": 1, "linger_ms": 20, "batch_size": 512 * 1024} if fast else
        {"acks": "all", "linger_ms": 5, "max_in_flight_requests_per_connection": 1})
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), **options)
    count = 0
    for topic, key, value in records:
        producer.send(f"{prefix}{topic}", key=key, value=value)
        count += 1
    producer.flush()
    producer.close()
    return count


def event(event_type: str, event_id: str, customer_id: str, occurred_at: str,
          **fields: Any) -> Record:
    """An input event as the record that carries it (topic chosen by type, keyed by customer)."""
    body = {"event_id": event_id, "type": event_type, "customer_id": customer_id,
            "occurred_at": occurred_at, **fields}
    return TOPIC_OF_TYPE[event_type], customer_id.encode(), orjson.dumps(body)


def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list[Any]:
    """Every record of a topic, up to its end offsets at the time of the call."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=1000)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end in {timeout} s")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topics: Iterable[str]) -> int:
    """The sum of the end offsets of every partition of ``topics``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","))
    try:
        tps = [TopicPartition(t, p) for t in topics
               for p in consumer.partitions_for_topic(t) or ()]
        return sum(consumer.end_offsets(tps).values()) if tps else 0
    finally:
        consumer.close()


def unconsumed(settings: Settings, topics: Iterable[str]) -> int:
    """How many records of ``topics`` lie beyond the offsets the settings' group has
    committed (over the settings' security protocol)."""
    consumer = KafkaConsumer(**sync_options(settings), group_id=settings.group_id,
                             enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in topics
               for p in consumer.partitions_for_topic(t) or ()]
        ends = consumer.end_offsets(tps) if tps else {}
        return sum(max(end - (consumer.committed(tp) or 0), 0) for tp, end in ends.items())
    finally:
        consumer.close()


def read_at_least(bootstrap: str, topic: str, count: int, timeout: float = 30.0) -> list[Any]:
    """Every record of a topic, once it holds at least ``count`` of them."""

    def enough() -> list[Any] | None:
        records = read_topic(bootstrap, topic)
        return records if len(records) >= count else None

    return wait_for(enough, timeout, f"{count} records in {topic}")


def partition_of(customer_id: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as the producers here use it."""
    return (murmur2(customer_id.encode()) & 0x7FFFFFFF) % partitions


def neighbours(customer_id: str, partitions: int, prefix: str, count: int = 1) -> list[str]:
    """``count`` customer ids (``prefix``0, ``prefix``1, ...) on ``customer_id``'s partition:
    on the event clock, a partition's time moves with its own events only."""
    target = partition_of(customer_id, partitions)
    found: list[str] = []
    n = 0
    while len(found) < count:
        if partition_of(f"{prefix}{n}", partitions) == target:
            found.append(f"{prefix}{n}")
        n += 1
    return found


def schema_validator(topic: str) -> Draft202012Validator:
    """A validator of the committed JSON Schema file of a topic (named without prefix)."""
    document = orjson.loads(schema_path(topic).read_bytes())
    return Draft202012Validator(document, format_checker=FormatChecker())
