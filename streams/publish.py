"""``valuestream publish FILE``: send events (JSONL or CSV) to their topics, keyed by customer.

Every line is checked as the worker will check it (``streams.decode``) and a bad one is
reported as ``FILE:LINE: reason``. ``--validate`` only checks; ``--sort`` sends the file in
``occurred_at`` order across all topics, as a history must be read (README, *Bringing
history in*).
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from kafka import KafkaProducer
from rich.console import Console
from rich.progress import Progress

from schemas.events import KEY_OF_TOPIC, TOPIC_OF_TYPE
from streams.clients import connect, sync_options
from streams.decode import Invalid, decode
from streams.settings import Settings
from streams.topics import TopicError

# Records go out in slices of this many, each acknowledged before the next: a client that
# batches per partition would otherwise let some topics run far ahead of others, and a
# worker reads a history in event-time order only as fast as its slowest topic arrives.
SLICE = 500
# CSV cells that are not strings: the order lines (a JSON array) and the rating.
CSV_JSON_COLUMNS = frozenset({"lines"})
CSV_INTEGER_COLUMNS = frozenset({"csat"})
LAST = datetime.max.replace(tzinfo=UTC)
Format = Literal["jsonl", "csv"]


def open_producer(settings: Settings) -> KafkaProducer:
    return connect(settings, lambda: KafkaProducer(**sync_options(settings), acks="all",
                                                   linger_ms=5, retries=5))


def route(event: Any) -> tuple[str, bytes]:
    """The topic (without prefix) and key of an event; ValueError says why it has none."""
    if not isinstance(event, dict):
        raise ValueError("not a JSON object")
    event_type = event.get("type")
    if not isinstance(event_type, str) or event_type not in TOPIC_OF_TYPE:
        raise ValueError(f"unknown or missing event type {event_type!r}")
    topic = TOPIC_OF_TYPE[event_type]
    key_field = KEY_OF_TOPIC[topic]  # customer_id, or a product's sku
    key = event.get(key_field)
    if not isinstance(key, str) or not key:
        raise ValueError(f"missing {key_field}")
    return topic, key.encode()


@dataclass(frozen=True, slots=True)
class Line:
    """One event of the file: where it goes, or why it cannot go anywhere."""

    number: int
    value: bytes
    topic: str | None = None  # None: cannot be routed (``problem`` says why)
    key: bytes | None = None
    problem: str | None = None  # why the worker would dead-letter it, or cannot route it
    occurred_at: datetime = LAST  # of a valid event (sorting)


def _raw_lines(path: Path, fmt: Format) -> Iterator[tuple[int, bytes | str]]:
    """(line number, the event as JSON) per non-empty line or CSV row, or (line number, why
    the row cannot be read)."""
    stream = sys.stdin.buffer if str(path) == "-" else path.open("rb")
    with stream:
        if fmt == "jsonl":
            for number, line in enumerate(stream, start=1):
                if line.strip():
                    yield number, line.rstrip(b"\r\n")
            return
        rows = csv.DictReader(io.TextIOWrapper(stream, encoding="utf-8", newline=""))
        for row in rows:
            try:
                yield rows.line_num, orjson.dumps(csv_event(row))
            except ValueError as exc:
                yield rows.line_num, f"not a valid CSV row: {exc}"


def csv_event(row: dict[str, str | None]) -> dict[str, Any]:
    """A CSV row as an event: one column per field, empty cells left out, ``lines`` a JSON
    array and ``csat`` a whole number."""
    event: dict[str, Any] = {}
    for column, cell in row.items():
        if column is None or cell is None:
            raise ValueError("more cells than columns")
        if not cell.strip():
            continue
        if column in CSV_JSON_COLUMNS:
            try:
                event[column] = orjson.loads(cell)
            except orjson.JSONDecodeError:
                raise ValueError(f"{column} is not JSON") from None
        elif column in CSV_INTEGER_COLUMNS:
            try:
                event[column] = int(cell)
            except ValueError:
                raise ValueError(f"{column} is not a whole number") from None
        else:
            event[column] = cell
    return event


def check(settings: Settings, path: Path, fmt: Format) -> Iterator[Line]:
    now = datetime.now(UTC)
    for number, raw in _raw_lines(path, fmt):
        if isinstance(raw, str):
            yield Line(number, b"", problem=raw)
            continue
        try:
            topic, key = route(orjson.loads(raw))
        except (orjson.JSONDecodeError, ValueError) as exc:
            yield Line(number, raw, problem=str(exc))
            continue
        decoded = decode(topic, key, raw, settings.max_message_bytes, now)
        if isinstance(decoded, Invalid):
            yield Line(number, raw, topic, key, f"{decoded.code}: {decoded.message}")
        else:
            yield Line(number, raw, topic, key, occurred_at=decoded.occurred_at)


def publish_file(settings: Settings, path: Path, fmt: Format | None = None, sort: bool = False,
                 validate_only: bool = False) -> int:
    """Check every line and send the events (``validate_only``: check only). A line that
    cannot be routed is skipped, one the worker would reject is sent (it becomes a dead
    letter) and both are reported. Exit 1 if any line was bad."""
    if str(path) != "-" and path.is_dir():
        raise TopicError(f"{path} is a directory; give a file of events")
    if str(path) != "-" and not path.is_file():
        raise TopicError(f"no such file: {path}")
    fmt = fmt or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    console = Console(stderr=True)
    lines: Iterable[Line] = check(settings, path, fmt)
    if sort:  # a stable sort: events of one moment keep the file's order
        lines = sorted(lines, key=lambda line: line.occurred_at)
    if validate_only:
        bad = sum(_report(console, path, line, "") for line in lines)
        print(f"checked {path}: {bad} bad line(s); nothing sent")
        return 1 if bad else 0
    total = None if str(path) == "-" else sum(1 for _ in _raw_lines(path, fmt))
    producer = open_producer(settings)
    sent = skipped = invalid = 0
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"publishing {path}", total=total)
        for line in lines:
            if line.topic is None:
                skipped += _report(console, path, line, "skipped: ")
            else:
                invalid += _report(console, path, line, "sent, will be a dead letter: ")
                producer.send(settings.topic(line.topic), key=line.key, value=line.value)
                sent += 1
                if sent % SLICE == 0:
                    producer.flush()
            progress.advance(task)
    producer.flush()
    producer.close()
    print(f"published {sent} event(s) ({invalid} invalid), skipped {skipped} bad line(s)")
    return 1 if skipped or invalid else 0


def _report(console: Console, path: Path, line: Line, action: str) -> bool:
    if line.problem is None:
        return False
    console.print(f"{path}:{line.number}: {action}{line.problem}", style="red", soft_wrap=True,
                  markup=False, highlight=False)
    return True
