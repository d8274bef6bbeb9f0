"""``valuestream publish FILE``: send JSONL events to their topics, keyed by customer."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaProducer
from rich.console import Console
from rich.progress import Progress

from schemas.events import TOPIC_OF_TYPE
from streams.clients import connect, sync_options
from streams.settings import Settings
from streams.topics import TopicError

# Records go out in slices of this many, each acknowledged before the next: a client that
# batches per partition would otherwise let some topics run far ahead of others, and a
# worker reads a history in event-time order only as fast as its slowest topic arrives.
SLICE = 500


def open_producer(settings: Settings) -> KafkaProducer:
    return connect(settings, lambda: KafkaProducer(**sync_options(settings), acks="all",
                                                   linger_ms=5, retries=5))


def route(event: Any) -> tuple[str, bytes]:
    """The topic (without prefix) and key of an event; ValueError says why it has none."""
    if not isinstance(event, dict):
        raise ValueError("not a JSON object")
    event_type, customer_id = event.get("type"), event.get("customer_id")
    if not isinstance(event_type, str) or event_type not in TOPIC_OF_TYPE:
        raise ValueError(f"unknown or missing event type {event_type!r}")
    if not isinstance(customer_id, str) or not customer_id:
        raise ValueError("missing customer_id")
    return TOPIC_OF_TYPE[event_type], customer_id.encode()


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    stream = sys.stdin.buffer if str(path) == "-" else path.open("rb")
    with stream:
        for number, line in enumerate(stream, start=1):
            if line.strip():
                yield number, line.rstrip(b"\r\n")


def publish_file(settings: Settings, path: Path) -> int:
    """Send every line; report each bad line with its number. Exit 1 if any was skipped."""
    if str(path) != "-" and not path.is_file():
        raise TopicError(f"no such file: {path}")
    total = None if str(path) == "-" else sum(1 for _ in _lines(path))
    producer = open_producer(settings)
    sent = skipped = 0
    console = Console(stderr=True)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"publishing {path}", total=total)
        for number, line in _lines(path):
            try:
                topic, key = route(orjson.loads(line))
            except (orjson.JSONDecodeError, ValueError) as exc:
                console.print(f"{path}:{number}: skipped: {exc}", style="red", soft_wrap=True,
                              markup=False, highlight=False)
                skipped += 1
            else:
                producer.send(settings.topic(topic), key=key, value=line)
                sent += 1
                if sent % SLICE == 0:
                    producer.flush()
            progress.advance(task)
    producer.flush()
    producer.close()
    print(f"published {sent} event(s), skipped {skipped} bad line(s)")
    return 1 if skipped else 0
