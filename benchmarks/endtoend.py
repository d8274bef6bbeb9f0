"""``make bench``: valuestream end to end, against what a bare Python consumer can do.

One run on one machine, so the ratios compare like with like:

1. a realistic event mix (``streams.demo``: orders with amendments, cancellations, refunds
   and late payments, tickets, many email events, 1% malformed) of N events over C customers
   is loaded into the input topics of a fresh namespace before any clock starts;
2. **baseline**: an aiokafka consumer drains the same topics and decodes every value with
   orjson, nothing else: the ceiling for a Python consumer here;
3. **throughput**: one worker processes them; timed from the moment it has its partitions
   until every event is applied and every output it emitted is in Kafka; peak RSS; bytes
   of local state on disk;
4. **latency**: the same worker is offered half its measured rate for a while, each event
   stamped with ``occurred_at`` = the moment it is sent; an event's latency ends when the
   customer's snapshot with that ``updated_at`` (or the event's dead letter) is readable;
5. **scaling**: steps 1 to 3 again with 10,000 and with 1,000,000 customers;
6. **recovery**: the 1,000,000-customer run is topped up so that every customer has state;
   the worker is stopped, its local state deleted, and a new worker started: timed from
   its launch until it has restored its tables from the changelogs and processed an event.

    python -m benchmarks.endtoend [--events N] [--customers C] ...
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from harness.application import Application
from harness.backlog import Backlog
from harness.kafka import end_offsets
from harness.worker import Worker, http_get, total
from schemas.events import CATALOG
from streams.clients import async_options, sync_options
from streams.demo import DemoTraffic, Message, history_start
from streams.topics import (
    CHURN_RISK,
    CUSTOMER_VALUE,
    DEAD_LETTERS,
    FOLLOW_UPS,
    INPUT_TOPICS,
    state_changelog_topic,
)

OUTPUTS = (CUSTOMER_VALUE, CHURN_RISK, FOLLOW_UPS, DEAD_LETTERS)
SEED = 42


@dataclass
class Throughput:
    customers: int
    events: int
    start_up_s: float  # launch until partitions assigned (not in events_per_s)
    seconds: float  # partitions assigned until all applied and every output in Kafka
    events_per_s: float
    outputs: int
    peak_rss_bytes: int
    state_bytes: int


@dataclass
class Latency:
    offered_per_s: float
    sent: int
    resolved: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    worker_cpu_s: float  # CPU time the worker used meanwhile
    capacity_per_s: float  # events per CPU-second of the worker: what it can take of them


@dataclass
class Recovery:
    customers: int
    changelog_records: int
    seconds: float  # launch of the new worker until its first event is processed
    overview_ms: float  # GET /ui of the recovered worker, median of OVERVIEW_REQUESTS


def traffic_for(customers: int, events: int, relationships: bool = True) -> DemoTraffic:
    """A history of ``events`` events, 30 s apart on average, ending before now (wall
    clock) (``relationships``: with categories, subscriptions, products and referrals)."""
    start = history_start(events)
    return DemoTraffic(customers, SEED, start, relationships=relationships)


async def drain(app: Application, expected: int) -> float:
    """The bare-consumer baseline: read and orjson-decode ``expected`` input messages."""
    consumer = AIOKafkaConsumer(**async_options(app.settings), enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(app.topic(t), p) for t in INPUT_TOPICS
                         for p in range(app.settings.partitions)])
        started = time.monotonic()
        seen = 0
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                for record in records:
                    try:  # noqa: SIM105 (suppress() would cost a context manager per record)
                        orjson.loads(record.value)
                    except orjson.JSONDecodeError:
                        pass
                seen += sum(map(len, batches.values()))
        return time.monotonic() - started
    finally:
        await consumer.stop()


def domain_only(app: Application, messages: list[Message]) -> float:
    """The agent's work on the messages as a backlog, without Kafka or RocksDB
    (``harness.backlog``). Returns the seconds."""
    backlog = Backlog(app.settings, messages)
    gc.disable()  # as in a worker, which collects between batches once a minute
    started = time.monotonic()
    accounted = backlog.run()
    seconds = time.monotonic() - started
    gc.enable()
    if accounted != len(messages):
        raise SystemExit(f"benchmark: the domain alone accounted for {accounted} of "
                         f"{len(messages)} messages")
    return seconds


def emitted(worker: Worker, app: Application) -> float:
    samples = worker.samples()
    return sum(total(samples, "valuestream_emitted_total", topic=app.topic(t)) for t in OUTPUTS)


def process_all(app: Application, events: int, customers: int) -> tuple[Worker, Throughput]:
    """Start a worker on loaded topics; time it until all is applied and flushed."""
    worker = app.worker()
    worker.start(wait=False)
    worker.wait(worker.ready, 600, "the worker to get its partitions")
    assigned = time.monotonic()

    def finished() -> bool:
        if worker.processed() < events:
            return False
        return end_offsets(app.settings.bootstrap_servers,
                           [app.topic(t) for t in OUTPUTS]) >= emitted(worker, app)

    worker.wait(finished, 7200, "every event to be applied and flushed", interval=0.5)
    done = time.monotonic()
    seconds = done - assigned
    return worker, Throughput(
        customers=customers, events=events, start_up_s=round(assigned - worker.started, 2),
        seconds=round(seconds, 2), events_per_s=round(events / seconds, 1),
        outputs=int(emitted(worker, app)), peak_rss_bytes=worker.peak_rss_bytes(),
        state_bytes=app.disk_bytes())


async def offered_load(app: Application, traffic: DemoTraffic, worker: Worker, rate: float,
                       seconds: float) -> Latency:
    """Send valid events at ``rate`` per second, stamped with the moment of sending, and
    time each until its customer's snapshot (or its dead letter) can be read."""
    cpu_before = worker.cpu_seconds()
    producer = AIOKafkaProducer(**async_options(app.settings), linger_ms=1)
    consumer = AIOKafkaConsumer(**async_options(app.settings), enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    tps = [TopicPartition(app.topic(t), p) for t in (CUSTOMER_VALUE, DEAD_LETTERS)
           for p in range(app.settings.partitions)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)
    pending: dict[str, list[datetime]] = defaultdict(list)
    latencies: list[float] = []
    total = int(rate * seconds)
    traffic.malformed = 0.0
    timed: list[datetime] = []  # the events whose latency is measured

    async def send() -> None:
        began = time.monotonic()
        sent = 0
        while sent < total:
            due = min(total, int((time.monotonic() - began) * rate) + 1)
            for _ in range(due - sent):
                traffic.now = datetime.now(UTC)
                topic, key, value = traffic.next_message()
                assert key is not None
                await producer.send(app.topic(topic), value, key=key)
                if topic != CATALOG:  # a product has no customer whose snapshot ends it
                    pending[key.decode()].append(traffic.now)
                    timed.append(traffic.now)
            sent = due
            await asyncio.sleep(0.002)

    def resolve(customer: str, up_to: datetime, only: datetime | None = None) -> None:
        now = datetime.now(UTC)
        waiting = pending.get(customer, [])
        done = [t for t in waiting if (t == only if only else t <= up_to)]
        for moment in done:
            waiting.remove(moment)
            latencies.append((now - moment).total_seconds() * 1000)

    async def receive(sending: asyncio.Task[None]) -> None:
        quiet_until: float | None = None
        while quiet_until is None or time.monotonic() < quiet_until:
            if sending.done() and quiet_until is None:
                quiet_until = time.monotonic() + 30
            if sending.done() and not any(pending.values()):
                return
            batches = await consumer.getmany(timeout_ms=20)
            for records in batches.values():
                for record in records:
                    if record.value is None:
                        continue
                    body = orjson.loads(record.value)
                    if "error" in body:  # a dead letter: the event it carries is done
                        event = orjson.loads(body["value"])
                        moment = datetime.fromisoformat(event["occurred_at"])
                        resolve(event["customer_id"], moment, only=moment)
                    else:
                        resolve(body["customer_id"], datetime.fromisoformat(body["updated_at"]))

    try:
        sending = asyncio.create_task(send())
        await receive(sending)
        await sending
    finally:
        await producer.stop()
        await consumer.stop()
    cpu = worker.cpu_seconds() - cpu_before
    values = np.array(latencies) if latencies else np.array([float("nan")])
    return Latency(offered_per_s=round(rate, 1), sent=len(timed), resolved=len(latencies),
                   p50_ms=round(float(np.percentile(values, 50)), 1),
                   p99_ms=round(float(np.percentile(values, 99)), 1),
                   max_ms=round(float(values.max()), 1), worker_cpu_s=round(cpu, 2),
                   capacity_per_s=round(len(timed) / cpu, 1) if cpu else float("nan"))


def recover(app: Application, traffic: DemoTraffic, worker: Worker) -> Recovery:
    """Give every customer state, then time a new worker restoring it from the changelog."""
    # A history of their own, spread like the rest (ending about now).
    traffic.now = datetime.now(UTC) - len(traffic.strangers()) * timedelta(
        seconds=traffic.mean_gap)
    before = worker.processed()
    topped_up = app.load(traffic.introductions())
    worker.wait(lambda: worker.processed() >= before + topped_up, 7200,
                "the top-up events to be applied", interval=0.5)
    customers = wait_for_customer_count(worker, lambda n: n == len(traffic.customers))
    worker.stop()
    records = changelog_records(app)
    app.delete_local_state()
    recovering = app.worker("recovering")
    recovering.start(wait=False)
    traffic.now = datetime.now(UTC)
    app.load([traffic.next_message()])
    recovering.wait(lambda: recovering.processed() >= 1, 7200,
                    "the new worker to recover and process an event", interval=0.5)
    seconds = time.monotonic() - recovering.started
    wait_for_customer_count(recovering, lambda n: n >= customers)
    overview_ms = time_overview(recovering)
    recovering.stop()
    return Recovery(customers=int(customers), changelog_records=records,
                    seconds=round(seconds, 2), overview_ms=overview_ms)


OVERVIEW_REQUESTS = 7


def time_overview(worker: Worker) -> float:
    """The median time of the overview page (``/ui``), in ms, over every customer."""
    times = []
    for _ in range(OVERVIEW_REQUESTS):
        started = time.perf_counter()
        status, page = http_get(f"{worker.url}/ui")
        times.append(1000 * (time.perf_counter() - started))
        if status != 200 or 'id="missing"' in page:
            raise SystemExit(f"benchmark: the overview answered {status} or left partitions out")
    return round(float(np.median(times)), 1)


def wait_for_customer_count(worker: Worker, good: Any) -> float:
    """The customer gauge is refreshed every 5 s: wait until it says what ``good`` wants."""
    count = 0.0

    def counted() -> bool:
        nonlocal count
        count = worker.metric("valuestream_customers")
        return bool(good(count))

    try:
        worker.wait(counted, 120, "the customer count")
    except AssertionError:
        raise SystemExit(f"benchmark: the worker counts {count:.0f} customers") from None
    return count


def changelog_records(app: Application) -> int:
    """Records in the state changelog (end minus start offsets: what a restore reads)."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as SyncTopicPartition

    consumer = KafkaConsumer(**sync_options(app.settings))
    tps = [SyncTopicPartition(state_changelog_topic(app.settings), p)
           for p in range(app.settings.partitions)]
    ends, starts = consumer.end_offsets(tps), consumer.beginning_offsets(tps)
    consumer.close()
    return sum(ends[tp] - starts[tp] for tp in tps)


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = next((int(line.split()[1]) * 1024 for line in
                   Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:")), 0)
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_bytes": memory,
            "python": platform.python_version(), "system": platform.platform(terse=True),
            "date": datetime.now(UTC).date().isoformat()}


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"valuestream benchmark, {m['date']}: {m['cpus']} CPUs ({m['cpu']}), "
        f"{mib(m['memory_bytes'])}, Python {m['python']}, {m['system']}",
        "",
        "| measure | value |",
        "|---|---|",
    ]
    if main := results.get("throughput"):
        base, domain = results["baseline"], results["domain_only"]
        lines += [
            f"| events, customers | {main['events']:,}, {main['customers']:,} |",
            f"| bare aiokafka consumer + orjson (baseline) | "
            f"{base['events_per_s']:,.0f} events/s |",
            f"| the worker's domain work alone, in one process, no Kafka "
            f"({domain['events']:,} events) | {domain['events_per_s']:,.0f} events/s |",
            f"| valuestream, one worker, end to end | {main['events_per_s']:,.0f} events/s "
            f"({main['seconds']} s; start-up {main['start_up_s']} s not counted) |",
            f"| ratio to the baseline | {results['ratio_to_baseline']:.4f} |",
            f"| peak RSS | {mib(main['peak_rss_bytes'])} |",
            f"| state on disk | {mib(main['state_bytes'])} |",
            f"| outputs written | {main['outputs']:,} |",
        ]
    if plain := results.get("without_relationships"):
        lines += [
            f"| the same mix without categories, catalog and referrals: end to end, domain "
            f"alone | {plain['events_per_s']:,.0f}, {plain['domain_only_events_per_s']:,.0f} "
            f"events/s |",
            f"| what interests, cross-sell and referrals cost: end to end, domain alone | "
            f"{plain['cost']:.0%}, {plain['domain_cost']:.0%} |"]
    if lat := results.get("latency"):
        half = results["latency_half_capacity"]
        lines += [
            f"| latency at {lat['offered_per_s']:,.0f} events/s offered (half the backlog "
            f"rate): p50 / p99 / max | {lat['p50_ms']} / {lat['p99_ms']} / {lat['max_ms']} ms "
            f"({lat['resolved']:,} of {lat['sent']:,} events) |",
            f"| the worker's capacity for live events (events per CPU-second in that run) | "
            f"{lat['capacity_per_s']:,.0f} events/s |",
            f"| latency at {half['offered_per_s']:,.0f} events/s offered (half that capacity): "
            f"p50 / p99 / max | {half['p50_ms']} / {half['p99_ms']} / {half['max_ms']} ms "
            f"({half['resolved']:,} of {half['sent']:,} events; worker busy "
            f"{half['offered_per_s'] / half['capacity_per_s']:.0%}) |"]
    if scale := results.get("scaling"):
        small, large = scale["runs"]
        lines += [
            f"| {small['customers']:,} customers | {small['events_per_s']:,.0f} events/s, "
            f"peak RSS {mib(small['peak_rss_bytes'])}, state {mib(small['state_bytes'])} |",
            f"| {large['customers']:,} customers | {large['events_per_s']:,.0f} events/s, "
            f"peak RSS {mib(large['peak_rss_bytes'])}, state {mib(large['state_bytes'])} |",
            f"| scaling: throughput ratio, RSS ratio | {scale['throughput_ratio']:.2f}, "
            f"{scale['rss_ratio']:.2f} |"]
    if rec := results.get("recovery"):
        lines += [f"| recovery of {rec['customers']:,} customers "
                  f"({rec['changelog_records']:,} changelog records) | {rec['seconds']} s |",
                  f"| the overview page (`/ui`) over {rec['customers']:,} customers, median of "
                  f"{OVERVIEW_REQUESTS} | {rec['overview_ms']} ms |"]
    return "\n".join(lines) + "\n"


def measure(root: Path, bootstrap: str, events: int, customers: int, keep: bool = False,
            relationships: bool = True
            ) -> tuple[Application, DemoTraffic, Worker | None, Throughput, float]:
    """Load, run the baseline, run one worker. The worker is stopped unless ``keep``."""
    app = Application(root, bootstrap, VALUESTREAM_PARTITIONS="8")
    traffic = traffic_for(customers, events, relationships)
    say(f"loading {events:,} events over {customers:,} customers ...")
    loaded = app.load(traffic.messages(events))
    baseline_s = asyncio.run(drain(app, loaded))
    say(f"  baseline: {loaded / baseline_s:,.0f} events/s")
    worker, result = process_all(app, loaded, customers)
    say(f"  valuestream: {result.events_per_s:,.0f} events/s, peak RSS "
        f"{mib(result.peak_rss_bytes)}, state {mib(result.state_bytes)}")
    if not keep:
        worker.stop()
        app.remove()
        return app, traffic, None, result, loaded / baseline_s
    return app, traffic, worker, result, loaded / baseline_s


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--scale", type=int, nargs=2, default=(10_000, 1_000_000),
                        metavar=("SMALL", "LARGE"), help="customers of the scaling runs")
    parser.add_argument("--latency-seconds", type=float, default=60.0)
    parser.add_argument("--skip", choices=("throughput", "latency", "scaling", "recovery",
                                           "relationships"),
                        nargs="*",
                        default=[], help="leave these measures out")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args(argv)
    if args.events < 1 or args.customers < 1 or min(args.scale) < 1:
        parser.error("--events, --customers and --scale must be positive")
    return args


def measure_main(root: Path, bootstrap: str, args: argparse.Namespace,
                 results: dict[str, Any]) -> None:
    """Baseline, throughput, the domain alone and latency, at the main number of customers."""
    app, traffic, worker, main_run, baseline = measure(root, bootstrap, args.events,
                                                       args.customers, keep=True)
    assert worker is not None
    results["baseline"] = {"events_per_s": round(baseline, 1)}
    # The same traffic as the worker's (the same seed): the whole history, so that the
    # customers' states and the time-driven work grow as they do in the worker.
    messages = list(traffic_for(args.customers, args.events).messages(args.events))
    results["domain_only"] = {"events": args.events,
                              "events_per_s": round(args.events / domain_only(app, messages), 1)}
    say(f"  domain only: {results['domain_only']['events_per_s']:,.0f} events/s")
    results["throughput"] = asdict(main_run)
    results["ratio_to_baseline"] = round(main_run.events_per_s / baseline, 3)
    if "latency" not in args.skip:
        rate = main_run.events_per_s / 2
        say(f"latency at {rate:,.0f} events/s for {args.latency_seconds:.0f} s ...")
        first = asyncio.run(offered_load(app, traffic, worker, rate, args.latency_seconds))
        results["latency"] = asdict(first)
        # Live events cost more than a backlog's (one snapshot each, small batches): half
        # of what the worker can take of them is half load for live traffic.
        rate = first.capacity_per_s / 2
        say(f"latency at {rate:,.0f} events/s (half the capacity for live events) ...")
        results["latency_half_capacity"] = asdict(asyncio.run(
            offered_load(app, traffic, worker, rate, args.latency_seconds)))
    worker.stop()
    app.remove()
    if "relationships" not in args.skip:
        measure_relationships(root, bootstrap, args, results)


def measure_relationships(root: Path, bootstrap: str, args: argparse.Namespace,
                          results: dict[str, Any]) -> None:
    """What interests, cross-sell and referrals cost: the same run on the mix without them
    (no categories or brands, subscriptions, products or referrals)."""
    say("the same without categories, catalog and referrals ...")
    app, _, _, plain, _ = measure(root, bootstrap, args.events, args.customers,
                                  relationships=False)
    messages = list(traffic_for(args.customers, args.events, False).messages(args.events))
    domain = args.events / domain_only(app, messages)
    results["without_relationships"] = {
        "events_per_s": plain.events_per_s, "domain_only_events_per_s": round(domain, 1),
        "cost": round(1 - results["throughput"]["events_per_s"] / plain.events_per_s, 3),
        "domain_cost": round(1 - results["domain_only"]["events_per_s"] / domain, 3)}


def main(argv: list[str]) -> int:
    args = arguments(argv)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    results: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="valuestream-bench-") as tmp:
        root = Path(tmp)
        if "throughput" not in args.skip:
            measure_main(root, bootstrap, args, results)
        if "scaling" not in args.skip or "recovery" not in args.skip:
            small, large = sorted(args.scale)
            runs = []
            if "scaling" not in args.skip:
                runs.append(measure(root, bootstrap, args.events, small)[3])
            keep = "recovery" not in args.skip
            app, traffic, worker, large_run, _ = measure(root, bootstrap, args.events, large,
                                                         keep=keep)
            runs.append(large_run)
            if len(runs) == 2:
                results["scaling"] = {
                    "runs": [asdict(r) for r in runs],
                    "throughput_ratio": round(runs[1].events_per_s / runs[0].events_per_s, 3),
                    "rss_ratio": round(runs[1].peak_rss_bytes / runs[0].peak_rss_bytes, 3)}
            if worker is not None:
                say(f"recovery of {large:,} customers ...")
                results["recovery"] = asdict(recover(app, traffic, worker))
                app.remove()
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    table = markdown(results)
    (args.out / f"bench-{stamp}.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2))
    (args.out / f"bench-{stamp}.md").write_text(table)
    print(table)
    say(f"written to {args.out}/bench-{stamp}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
