"""``valuestream publish``: every good line to its topic, keyed by customer; every bad line
reported with its number."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from harness.kafka import read_topic
from harness.worker import ROOT

pytestmark = pytest.mark.kafka


def test_publish_routes_keys_and_reports_bad_lines(kafka_bootstrap: str, namespace: str,
                                                   tmp_path: Path) -> None:
    lines = [
        orjson.dumps({"type": "order.paid", "customer_id": "ann", "event_id": "1"}),
        b"",
        b"{not json",
        orjson.dumps({"type": "ticket.opened", "customer_id": "ben", "event_id": "2"}),
        orjson.dumps({"type": "order.teleported", "customer_id": "ann"}),
        orjson.dumps({"type": "email.sent", "event_id": "3"}),
        orjson.dumps({"type": "customer.erasure_requested", "customer_id": "cyd"}),
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "VALUESTREAM_TOPIC_PREFIX": f"{namespace}-"}
    result = subprocess.run([sys.executable, "-m", "streams.cli", "publish", str(path)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 1  # some lines were skipped
    reported = result.stdout + result.stderr
    for number in (3, 5, 6):
        assert f"{path}:{number}: skipped" in reported
    assert "published 3 event(s), skipped 3 bad line(s)" in result.stdout

    def keyed(topic: str) -> list[tuple[bytes, bytes]]:
        return [(r.key, r.value) for r in read_topic(kafka_bootstrap, f"{namespace}-{topic}")]

    assert keyed("orders") == [(b"ann", lines[0])]
    assert keyed("support-tickets") == [(b"ben", lines[3])]
    assert keyed("erasure-requests") == [(b"cyd", lines[6])]
