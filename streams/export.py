"""``valuestream export``: the customers a filter names, with the fields asked for, as CSV or
JSON lines, for import into mail and ad tools (README, *Segment exports*).

The source is the compacted ``customer-value`` topic: each customer's latest snapshot. It is
read one partition at a time (a customer's snapshots are all on one partition), keeping only
the latest record per customer of that partition, so memory holds one partition's profiles
and the selected rows, never the whole topic.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson
from kafka import KafkaConsumer, TopicPartition
from rich.console import Console
from rich.progress import Progress

from streams.clients import connect, sync_options
from streams.filters import FilterError, Predicate, parse_fields, parse_filter, value_at
from streams.settings import ConfigError, Settings
from streams.topics import CUSTOMER_VALUE, TopicError

# What a mail or ad tool needs to act, when --fields does not say.
DEFAULT_FIELDS = ("customer_id,value_tier,churn_risk.level,churn_risk.score,"
                  "predicted_clv_365d,net_revenue,currency,orders,last_order_at,unsubscribed")


def latest_profiles(consumer: KafkaConsumer, topic: str, progress: Progress
                    ) -> Iterator[dict[str, Any]]:
    """Every customer's latest profile, partition by partition (deleted customers left out)."""
    partitions = sorted(consumer.partitions_for_topic(topic) or ())
    if not partitions:
        raise TopicError(f"there is no topic {topic} (is VALUESTREAM_TOPIC_PREFIX right, and "
                         "has a worker run?)")
    tps = [TopicPartition(topic, p) for p in partitions]
    starts, ends = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
    task = progress.add_task("reading customer-value",
                             total=sum(ends[tp] - starts[tp] for tp in tps))
    for tp in tps:
        latest: dict[bytes, bytes | None] = {}
        consumer.assign([tp])
        consumer.seek(tp, starts[tp])
        while consumer.position(tp) < ends[tp]:
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    if record.offset < ends[tp] and record.key is not None:
                        latest[record.key] = record.value
                progress.advance(task, len(records))
        for value in latest.values():
            if value is not None:
                yield orjson.loads(value)


def _cell(value: Any) -> Any:
    """A CSV cell: text and numbers as they are; lists and objects as JSON; null empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return value


def write_rows(rows: list[dict[str, Any]], fields: list[tuple[str, str]] | None,
               output_format: str, out: IO[str]) -> None:
    if output_format == "jsonl":
        for row in rows:
            selected = row if fields is None else {name: value_at(row, path)
                                                    for name, path in fields}
            out.write(orjson.dumps(selected).decode() + "\n")
        return
    columns = fields or parse_fields(DEFAULT_FIELDS)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([name for name, _ in columns])
    for row in rows:
        writer.writerow([_cell(value_at(row, path)) for _, path in columns])


def run_export(settings: Settings, where: str | None, field_list: str | None,
               output_format: str, output: Path | None) -> int:
    try:
        predicate: Predicate = parse_filter(where) if where is not None else (lambda row: True)
    except FilterError as exc:
        raise ConfigError(f"--where: {exc}") from None
    try:
        fields = parse_fields(field_list) if field_list is not None else None
    except FilterError as exc:
        raise ConfigError(f"--fields: {exc}") from None
    topic = settings.topic(CUSTOMER_VALUE)
    consumer = connect(settings, lambda: KafkaConsumer(
        **sync_options(settings), group_id=None, enable_auto_commit=False))
    console = Console(stderr=True)
    try:
        with Progress(console=console, transient=True) as progress:
            rows = [row for row in latest_profiles(consumer, topic, progress) if predicate(row)]
    finally:
        consumer.close()
    rows.sort(key=lambda row: row["customer_id"])
    if output is None:
        write_rows(rows, fields, output_format, sys.stdout)
    else:
        with output.open("w", encoding="utf-8", newline="") as out:
            write_rows(rows, fields, output_format, out)
    console.print(f"exported {len(rows):,} customer(s)"
                  + (f" to {output}" if output is not None else ""))
    return 0
