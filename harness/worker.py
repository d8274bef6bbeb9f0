"""A ``valuestream worker`` process of one application, and waiting on conditions."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
import urllib3
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from harness.kafka import unconsumed
from harness.waiting import wait_for
from streams.settings import Settings
from streams.topics import group_inputs, referrals_topic

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
HTTP = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2.0, read=30.0), retries=False)


class WorkerExited(AssertionError):
    """The worker process ended while something was waited for."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    response = HTTP.request("GET", url, headers=headers)
    body = orjson.loads(response.data) if response.headers.get("Content-Type", "").startswith(
        "application/json") else response.data.decode()
    return response.status, body


def application_env(bootstrap: str, namespace: str, data_dir: Path, **settings: str
                    ) -> dict[str, str]:
    """The environment of a worker of application ``namespace`` (also its topic prefix)."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "VALUESTREAM_TOPIC_PREFIX": f"{namespace}-",
        "VALUESTREAM_APP_ID": namespace,
        "VALUESTREAM_DATA_DIR": str(data_dir),
        **settings,
    }


@dataclass
class Worker:
    """A ``valuestream worker`` process with the environment ``env`` (see
    ``application_env``) and a web port of its own."""

    name: str
    env: dict[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0  # monotonic time of the last start

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return Path(self.env["VALUESTREAM_DATA_DIR"])

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def start(self, wait: bool = True) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"], cwd=ROOT,
            env={**self.env, "VALUESTREAM_WEB_PORT": str(self.port)},
            stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()

    def alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise WorkerExited(f"worker {self.name} exited:\n{self.log_tail()}")

    def wait(self, condition: Callable[[], T | None], timeout: float, what: str,
             interval: float = 0.2) -> T:
        """``wait_for``, failing at once if the worker exits."""
        return wait_for(condition, timeout, what, interval, self.alive)

    def ready(self) -> bool:
        """Partitions assigned and restored."""
        status, body = http_get(f"{self.url}/health")
        return status == 200 and bool(body["active_partitions"])

    def wait_ready(self, timeout: float = 120.0) -> None:
        self.wait(self.ready, timeout, f"worker {self.name} to be ready")

    def health(self) -> dict[str, Any]:
        return http_get(f"{self.url}/health")[1]

    def wait_settled(self, timeout: float = 120.0) -> None:
        """Until every record in the group's input topics is processed, written and its
        offset committed, and nothing is left to do: no event waiting in a buffer, the
        catalog read to its end, the time-driven work up to every clock done. Committed
        offsets, unlike a count of processed messages, also hold across restarts."""
        settings = Settings.from_env(self.env)
        topics = list(group_inputs(settings))

        def settled() -> bool:
            return (unconsumed(settings, topics) == 0
                    and self.health()["settled"])

        self.wait(settled, timeout, "every input committed and the worker settled", 0.5)

    def profile(self, customer_id: str, as_of: str | None = None) -> tuple[int, Any]:
        """The profile as a client with the worker's API token (if it has one) asks for it."""
        query = f"?as_of={as_of}" if as_of else ""
        token = self.env.get("VALUESTREAM_API_TOKEN")
        return http_get(f"{self.url}/customers/{customer_id}{query.replace('+', '%2B')}",
                        {"Authorization": f"Bearer {token}"} if token else None)

    def samples(self) -> list[Sample]:
        """One scrape of the valuestream_* metrics (empty while the worker does not answer)."""
        try:
            status, text = http_get(f"{self.url}/metrics")
        except (OSError, urllib3.exceptions.HTTPError):
            return []
        if status != 200:
            return []
        return [sample for family in text_string_to_metric_families(text)
                for sample in family.samples if sample.name.startswith("valuestream_")]

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` that carry all of ``labels``."""
        return total(self.samples(), name, **labels)

    def input_events(self) -> list[Sample]:
        """The ``valuestream_events_total`` samples of input messages (not of the internal
        referral updates that the worker sends itself)."""
        internal = referrals_topic(Settings.from_env(self.env))
        return [sample for sample in self.samples()
                if sample.name == "valuestream_events_total"
                and sample.labels["topic"] != internal]

    def events_by_outcome(self) -> dict[str, float]:
        """Input messages accounted for since the process started, by outcome."""
        totals: dict[str, float] = {}
        for sample in self.input_events():
            outcome = sample.labels["outcome"]
            totals[outcome] = totals.get(outcome, 0) + sample.value
        return totals

    def processed(self) -> float:
        """Input messages accounted for since the process started."""
        return sum(sample.value for sample in self.input_events())

    def peak_rss_bytes(self) -> int:
        """The process's peak resident set size (VmHWM), from /proc."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc (not Linux?)")

    def cpu_seconds(self) -> float:
        """CPU time the process has used (user and system), from /proc."""
        assert self.process is not None
        stat = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")

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
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` that carry all of ``labels``."""
    return sum(s.value for s in samples
               if s.name == name and labels.items() <= s.labels.items())
