"""Benchmark: does time-driven work cost in proportion to what falls due?

The same replay (M events of other customers spread over 40 days of event time, on the
event clock) is timed on three workers: one with no customers, one with N idle customers
(nothing pending), and one with N customers whose reorder reminders fall due spread over
that month (two orders g days apart, g from 7 to 37, the second on day 0: reminder on day g).

    python -m benchmarks.followups [N] [M]
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from harness.application import Application
from harness.worker import Worker
from schemas.events import TOPIC_OF_TYPE
from streams.demo import Message

DAY0 = datetime(2026, 3, 1, tzinfo=UTC)


def _event(kind: str, customer: str, moment: datetime, **fields: object) -> Message:
    body = {"event_id": f"{customer}-{kind}-{moment.timestamp()}", "type": kind,
            "customer_id": customer, "occurred_at": moment.isoformat(), **fields}
    return TOPIC_OF_TYPE[kind], customer.encode(), orjson.dumps(body)


def pending_customers(n: int) -> Iterator[Message]:
    rng = random.Random(5)
    gaps = [rng.uniform(7, 37) for _ in range(n)]
    line = [{"sku": "s", "quantity": 1, "unit_price": "25.00"}]
    firsts = sorted((DAY0 - timedelta(days=g), f"p{i}") for i, g in enumerate(gaps))
    for moment, customer in firsts:
        yield _event("order.placed", customer, moment, order_id="o1", currency="USD", lines=line)
    for i in range(n):
        yield _event("order.placed", f"p{i}", DAY0 + timedelta(seconds=i % 3600),
                     order_id="o2", currency="USD", lines=line)


def idle_customers(n: int) -> Iterator[Message]:
    for i in range(n):
        yield _event("email.sent", f"i{i}", DAY0 + timedelta(seconds=i % 3600), message_id="m")


def replay(m: int) -> Iterator[Message]:
    step = timedelta(days=40) / m
    for k in range(m):
        yield _event("email.sent", f"r{k % 1000}", DAY0 + timedelta(hours=2) + k * step,
                     message_id=f"m{k}")


def start_worker(root: Path) -> tuple[Application, Worker]:
    """A worker on the event clock, of a fresh application, once it owns its partitions."""
    app = Application(root, os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                      VALUESTREAM_CLOCK="event", VALUESTREAM_PARTITIONS="8")
    worker = app.worker()
    worker.start()
    return app, worker


def send(app: Application, worker: Worker, messages: Iterator[Message]) -> float:
    """Send and wait until all are processed; return the seconds it took."""
    before = worker.processed()
    started = time.monotonic()
    count = app.load(messages)
    worker.wait(lambda: worker.processed() >= before + count, 3600,
                "the events to be processed")
    return time.monotonic() - started


def settle(worker: Worker, name: str, quiet: float = 5.0, **labels: str) -> float:
    """Wait until a counter has not moved for ``quiet`` seconds; return its value."""
    value, since = worker.metric(name, **labels), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.5)
        latest = worker.metric(name, **labels)
        if latest != value:
            value, since = latest, time.monotonic()
    return value


def handled(worker: Worker) -> tuple[float, float]:
    """Follow-ups emitted, and follow-ups dropped for any cause, so far."""
    return (worker.metric("valuestream_emitted_total", kind="follow_up_due"),
            worker.metric("valuestream_follow_ups_dropped_total"))


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 100_000
    m = int(argv[1]) if len(argv) > 1 else 20_000
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, load in (("no customers", None), (f"{n} idle customers", idle_customers),
                           (f"{n} reminders falling due", pending_customers)):
            app, worker = start_worker(Path(tmp))
            load_s = send(app, worker, load(n)) if load else 0.0
            before = handled(worker)
            started = time.monotonic()
            send(app, worker, replay(m))
            # ... and until what fell due during the replay has been handled too.
            settle(worker, "valuestream_follow_ups_dropped_total")
            settle(worker, "valuestream_emitted_total", kind="follow_up_due")
            replay_s = time.monotonic() - started - 10.0  # less the two quiet periods
            fired, dropped = (a - b for a, b in zip(handled(worker), before, strict=True))
            expired = worker.metric("valuestream_follow_ups_dropped_total", cause="expired")
            worker.stop()
            app.remove()
            rows.append((name, replay_s, m / replay_s, fired, dropped, expired))
            print(f"{name}: load {load_s:.1f} s; replay of {m} events and its due work "
                  f"{replay_s:.1f} s ({m / replay_s:.0f} events/s); follow-ups fired {fired:.0f},"
                  f" dropped {dropped:.0f} ({expired:.0f} expired)", flush=True)
    base_s = rows[0][1]
    print("\n| before the replay | replay + due work | events/s | extra | fired | dropped "
          "(expired) | extra ms per due follow-up |")
    print("|---|---|---|---|---|---|---|")
    for name, seconds, rate, fired, dropped, expired in rows:
        extra, due = seconds - base_s, fired + dropped
        per = f"{1000 * extra / due:.2f}" if due else "-"
        print(f"| {name} | {seconds:.1f} s | {rate:.0f} | {extra:+.1f} s | {fired:.0f} | "
              f"{dropped:.0f} ({expired:.0f}) | {per} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
