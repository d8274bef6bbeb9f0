"""``valuestream fit``: fit the models on every customer's latest profile and publish them.

The source is the compacted ``customer-value`` topic (the latest snapshot per customer,
tombstones removing erased ones), or a JSONL file of profiles with ``--input``. Ages are
measured at ``--as-of`` (default: now), not at each snapshot's own time. ``--reset``
publishes the documented defaults again.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from kafka import KafkaConsumer, TopicPartition
from rich.console import Console
from rich.table import Table

from streams.clients import connect, sync_options
from streams.domain.fitting import FitError, Summaries, fit_models
from streams.domain.models import DEFAULT_PARAMS, ModelParams, dump_params
from streams.publish import open_producer
from streams.settings import Settings
from streams.topics import CUSTOMER_VALUE, MODEL_PARAMS, TopicError

PARAMS_KEY = b"params"


def latest_profiles(settings: Settings) -> Iterable[bytes]:
    """The latest value per key of ``customer-value``, read to its current end."""
    topic = settings.topic(CUSTOMER_VALUE)
    consumer = connect(settings, lambda: KafkaConsumer(
        **sync_options(settings), enable_auto_commit=False, group_id=None,
        max_partition_fetch_bytes=8 * 1024 * 1024, allow_auto_create_topics=False))
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise TopicError(f"topic {topic} does not exist yet: start a worker or run "
                             "`valuestream topics` first")
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        latest: dict[bytes, bytes | None] = {}
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            for tp, records in consumer.poll(timeout_ms=1000, max_records=50_000).items():
                for record in records:
                    latest[record.key] = record.value
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return [v for v in latest.values() if v is not None]
    finally:
        consumer.close()


def summaries(profiles: Iterable[bytes], as_of: datetime, default_margin: float) -> Summaries:
    """Rows for customers with a purchase, in customer order; ages measured at ``as_of``.
    (The optimisers' sums depend on the order of the rows: a fit on the same profiles read
    in another order from the topic's partitions could come out differently, down to
    converging or not.)"""
    as_of_day = as_of.astimezone(UTC).date()
    rows = []
    for raw in profiles:
        p: dict[str, Any] = orjson.loads(raw)
        if p.get("frequency") is None:
            continue
        first_day = datetime.fromisoformat(p["first_order_at"]).astimezone(UTC).date()
        age = max((as_of_day - first_day).days, p["recency_days"])
        margin = p["margin_rate"] if p["margin_rate"] is not None else default_margin
        rows.append((p["customer_id"], (
            p["frequency"], p["recency_days"], age, float(p["monetary_value"]),
            float(p["net_revenue"]) / (p["frequency"] + 1), margin)))
    rows.sort(key=lambda row: row[0])
    columns = np.array([row for _, row in rows], dtype=np.float64).reshape(-1, 6).T
    return Summaries(*columns)


def run_fit(settings: Settings, as_of: datetime | None, source: Path | None, as_json: bool,
            dry_run: bool, reset: bool = False) -> int:
    console = Console(stderr=True)
    if reset:
        if not dry_run:
            publish_params(settings, DEFAULT_PARAMS)
        console.print(f"the documented default parameters {'would be' if dry_run else 'are'} "
                      f"published to {settings.topic(MODEL_PARAMS)}")
        return 0
    started = time.monotonic()
    moment = as_of or datetime.now(UTC)
    profiles = _read(source) if source else latest_profiles(settings)
    data = summaries((p for p in profiles if p.strip()), moment, float(settings.default_margin))
    loaded = time.monotonic()
    try:
        fit = fit_models(data, moment)
    except FitError as exc:
        console.print(f"valuestream fit: {exc}; nothing published, the parameters in force "
                      "stay as they are", style="red", soft_wrap=True)
        return 1
    fitted = time.monotonic()
    if as_json:
        sys.stdout.buffer.write(dump_params(fit.params) + b"\n")
    else:
        _summary(console, fit.params, loaded - started, fitted - loaded)
    for warning in fit.warnings:
        console.print(f"warning: {warning}", style="yellow", soft_wrap=True)
    if not dry_run:
        publish_params(settings, fit.params)
        console.print(f"published to {settings.topic(MODEL_PARAMS)}")
    return 0


def _read(source: Path) -> list[bytes]:
    try:
        return source.read_bytes().splitlines()
    except OSError as exc:
        raise TopicError(f"--input {source}: {exc.strerror}") from None


def publish_params(settings: Settings, params: ModelParams) -> None:
    producer = open_producer(settings)
    producer.send(settings.topic(MODEL_PARAMS), key=PARAMS_KEY, value=dump_params(params))
    producer.flush()
    producer.close()


def _summary(console: Console, params: ModelParams, load_s: float, fit_s: float) -> None:
    table = Table(title=f"fitted on {params.n_customers} customers (time unit: day)")
    for column in ("model", "log-likelihood", "parameters"):
        table.add_column(column)
    ll = params.log_likelihood
    for name, key, values in (("BG/NBD", "bgnbd", params.bgnbd),
                              ("MBG/NBD", "mbgnbd", params.mbgnbd),
                              ("Gamma-Gamma", "gamma_gamma", params.gamma_gamma)):
        shown = ", ".join(f"{f}={getattr(values, f):.4g}" for f in values.__slots__)
        table.add_row(name, f"{ll[key]:.1f}", shown)
    console.print(table)
    rfm = params.rfm
    console.print(f"RFM quintile cut-offs: recency days {rfm.recency_days}, purchase days "
                  f"{rfm.frequency}, spend per purchase day {rfm.monetary}", soft_wrap=True)
    tiers = params.tiers
    console.print(f"value tiers by predicted CLV: silver >= {tiers.silver:.2f}, gold >= "
                  f"{tiers.gold:.2f}, platinum >= {tiers.platinum:.2f}", soft_wrap=True)
    console.print(f"read in {load_s:.1f} s, fitted in {fit_s:.1f} s")
