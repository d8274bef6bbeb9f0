"""One valuestream application of its own on the broker: topics, consumer group, local
state, and its workers (the benchmarks start one per measure)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

from kafka.admin import KafkaAdminClient

from harness.kafka import Record, produce
from harness.worker import Worker, application_env
from streams.clients import sync_options
from streams.settings import Settings
from streams.topics import ensure_topics


class Application:
    def __init__(self, root: Path, bootstrap: str, **settings: str) -> None:
        self.name = f"bench{uuid.uuid4().hex[:8]}"
        self.root = root
        self.data_dir = root / self.name
        rates = root / "fx-rates.json"  # the demo traffic has orders in EUR
        rates.write_text('{"EUR": "1.08"}')
        self.env = application_env(bootstrap, self.name, self.data_dir,
                                   VALUESTREAM_FX_RATES=str(rates),
                                   VALUESTREAM_LOG_LEVEL="warning", **settings)
        self.settings = Settings.from_env(self.env)
        ensure_topics(self.settings)

    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    def worker(self, name: str = "worker") -> Worker:
        """A new worker process of this application (not started)."""
        return Worker(f"{self.name}-{name}", self.env, log_dir=self.root)

    def load(self, messages: Iterable[Record]) -> int:
        """Send every message and wait until the broker has them all; return the count."""
        return produce(self.settings.bootstrap_servers, self.settings.topic(""), messages,
                       fast=True)

    def disk_bytes(self) -> int:
        """Bytes of the worker's local state (RocksDB files) on disk."""
        return sum(p.stat().st_size for p in self.data_dir.rglob("*") if p.is_file())

    def delete_local_state(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def remove(self) -> None:
        """Delete the local state and every topic of the application: a benchmark makes
        several applications per run, and on a long-lived broker their topics pile up (a
        broker holding 2,600 idle topics spent half a core on them, skewing later runs)."""
        self.delete_local_state()
        prefix = self.settings.topic("")
        admin = KafkaAdminClient(**sync_options(self.settings))
        try:
            admin.delete_topics([t for t in admin.list_topics() if t.startswith(prefix)])
        finally:
            admin.close()
