"""Test helpers: waiting on conditions, worker processes, producing and reading topics."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
import urllib3
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
HTTP = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2.0, read=10.0), retries=False)


def wait_for(
    condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2
) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            last_error, value = exc, None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} ({last_error=})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str) -> tuple[int, Any]:
    response = HTTP.request("GET", url)
    body = orjson.loads(response.data) if response.headers.get("Content-Type", "").startswith(
        "application/json") else response.data.decode()
    return response.status, body


@dataclass
class Worker:
    """A ``valuestream worker`` process of one test application."""

    name: str
    bootstrap: str
    namespace: str
    data_dir: Path
    port: int
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "VALUESTREAM_TOPIC_PREFIX": f"{self.namespace}-",
            "VALUESTREAM_APP_ID": self.namespace,
            "VALUESTREAM_DATA_DIR": str(self.data_dir),
            "VALUESTREAM_WEB_PORT": str(self.port),
            "VALUESTREAM_PARTITIONS": "4",
            "VALUESTREAM_TICK_SECONDS": "0.2",
            "VALUESTREAM_SESSION_TIMEOUT": "6",
            **self.extra_env,
        }

    def start(self, wait: bool = True) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir.parent / f"{self.name}.log"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 90.0) -> None:
        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker {self.name} exited:\n{self.log_tail()}")
            status, body = http_get(f"{self.url}/health")
            return status == 200 and bool(body["active_partitions"])

        wait_for(ready, timeout, f"worker {self.name} to be ready")

    def health(self) -> dict[str, Any]:
        return http_get(f"{self.url}/health")[1]

    def profile(self, customer_id: str, as_of: str | None = None) -> tuple[int, Any]:
        query = f"?as_of={as_of}" if as_of else ""
        return http_get(f"{self.url}/customers/{customer_id}{query.replace('+', '%2B')}")

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Samples of the valuestream_* metrics: (name, labels) -> value."""
        from prometheus_client.parser import text_string_to_metric_families

        text = http_get(f"{self.url}/metrics")[1]
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name.startswith("valuestream_")
        }

    def events_by_outcome(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for (name, labels), value in self.metrics().items():
            if name == "valuestream_events_total":
                outcome = dict(labels)["outcome"]
                totals[outcome] = totals.get(outcome, 0) + value
        return totals

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no commit."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


Record = tuple[str, bytes | None, bytes | None]  # topic (without prefix), key, value


def produce(bootstrap: str, prefix: str, records: Iterable[Record]) -> int:
    """Send records in the order given (per topic and key, order is kept); return the count."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                             max_in_flight_requests_per_connection=1)
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
    from schemas.events import TOPIC_OF_TYPE

    body = {"event_id": event_id, "type": event_type, "customer_id": customer_id,
            "occurred_at": occurred_at, **fields}
    return TOPIC_OF_TYPE[event_type], customer_id.encode(), orjson.dumps(body)


def read_topic(bootstrap: str, topic: str, timeout: float = 10.0) -> list[Any]:
    """Every record of a topic, up to its end offsets at the time of the call."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
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


def read_at_least(bootstrap: str, topic: str, count: int, timeout: float = 30.0) -> list[Any]:
    """Every record of a topic, once it holds at least ``count`` of them."""

    def enough() -> list[Any] | None:
        records = read_topic(bootstrap, topic)
        return records if len(records) >= count else None

    return wait_for(enough, timeout, f"{count} records in {topic}")
