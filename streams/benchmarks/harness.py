"""What the benchmarks share: a worker process of its own application, and loading topics.

Every benchmark worker gets a fresh namespace (topic prefix, application id, data directory)
on the broker that ``KAFKA_BOOTSTRAP_SERVERS`` names, so runs never see each other's data.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import orjson
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from streams.demo import Message
from streams.settings import Settings
from streams.topics import ensure_topics


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` that carry all of ``labels``."""
    return sum(s.value for s in samples
               if s.name == name and labels.items() <= s.labels.items())


class BenchError(SystemExit):
    """A benchmark cannot go on: the worker exited or did not get there in time."""


def wait(condition: Callable[[], object], timeout: float, what: str,
         alive: Callable[[], None] = lambda: None, interval: float = 0.1) -> float:
    """Poll ``condition`` until it is truthy; return the monotonic time it became so."""
    deadline = time.monotonic() + timeout
    while not condition():
        alive()
        if time.monotonic() > deadline:
            raise BenchError(f"benchmark: timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic()


class Namespace:
    """Topics, consumer group and local state of one benchmark application."""

    def __init__(self, root: Path, clock: str = "wall", partitions: int = 8) -> None:
        self.name = f"bench{uuid.uuid4().hex[:8]}"
        self.data_dir = root / self.name
        rates = root / "fx-rates.json"  # the demo traffic has orders in EUR
        rates.write_text('{"EUR": "1.08"}')
        self.env = {**os.environ, "VALUESTREAM_TOPIC_PREFIX": f"{self.name}-",
                    "VALUESTREAM_APP_ID": self.name, "VALUESTREAM_CLOCK": clock,
                    "VALUESTREAM_PARTITIONS": str(partitions),
                    "VALUESTREAM_DATA_DIR": str(self.data_dir),
                    "VALUESTREAM_FX_RATES": str(rates), "VALUESTREAM_LOG_LEVEL": "warning"}
        self.settings = Settings.from_env(self.env)
        ensure_topics(self.settings)

    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    def load(self, messages: Iterable[Message]) -> int:
        """Send every message and wait until the broker has them all; return the count."""
        producer = KafkaProducer(bootstrap_servers=self.settings.bootstrap_servers.split(","),
                                 acks=1, linger_ms=20, batch_size=512 * 1024)
        count = 0
        for topic, key, value in messages:
            producer.send(self.topic(topic), key=key, value=value)
            count += 1
        producer.flush()
        producer.close()
        return count

    def disk_bytes(self) -> int:
        """Bytes of the worker's local state (RocksDB files) on disk."""
        return sum(p.stat().st_size for p in self.data_dir.rglob("*") if p.is_file())

    def delete_local_state(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)


class BenchWorker:
    """A ``valuestream worker`` process of one namespace, observed through its /metrics."""

    def __init__(self, namespace: Namespace, log_dir: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        env = {**namespace.env, "VALUESTREAM_WEB_PORT": str(self.port)}
        self.log_path = log_dir / f"{namespace.name}-{self.port}.log"
        log = self.log_path.open("wb")
        self.started = time.monotonic()
        self.process = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"],
                                        env=env, stdout=log, stderr=subprocess.STDOUT)

    def alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchError(f"benchmark: the worker exited, see {self.log_path}")

    def wait(self, condition: Callable[[], object], timeout: float, what: str) -> float:
        return wait(condition, timeout, what, self.alive)

    def _get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except OSError:
            return 0, b""

    def samples(self) -> list[Sample]:
        """One scrape of the worker's /metrics (empty while it does not answer)."""
        status, body = self._get("/metrics")
        if status != 200:
            return []
        return [sample for family in text_string_to_metric_families(body.decode())
                for sample in family.samples]

    def metric(self, name: str, **labels: str) -> float:
        return total(self.samples(), name, **labels)

    def active(self) -> bool:
        """Partitions assigned and tables recovered."""
        status, body = self._get("/health")
        return status == 200 and bool(orjson.loads(body)["active_partitions"])

    def peak_rss_bytes(self) -> int:
        """The process's peak resident set size (VmHWM), from /proc."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise BenchError("benchmark: no VmHWM in /proc (not Linux?)")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
