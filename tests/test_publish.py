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
    assert result.returncode == 1  # some lines were bad
    reported = result.stdout + result.stderr
    for number in (3, 5, 6):
        assert f"{path}:{number}: skipped" in reported
    for number in (1, 4, 7):  # routed, but the worker will refuse them: reported and sent
        assert f"{path}:{number}: sent, will be a dead letter: schema_violation" in reported
    assert "published 3 event(s) (3 invalid), skipped 3 bad line(s)" in result.stdout

    def keyed(topic: str) -> list[tuple[bytes, bytes]]:
        return [(r.key, r.value) for r in read_topic(kafka_bootstrap, f"{namespace}-{topic}")]

    assert keyed("orders") == [(b"ann", lines[0])]
    assert keyed("support-tickets") == [(b"ben", lines[3])]
    assert keyed("erasure-requests") == [(b"cyd", lines[6])]


def publish(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", "publish", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60, check=False)


TEA = '"[{""sku"": ""tea"", ""quantity"": 2, ""unit_price"": ""4.50""}]"'
CSV = f"""type,event_id,customer_id,occurred_at,order_id,currency,lines,ticket_id,csat
ticket.rated,e3,ann,2026-03-03T10:00:00Z,,,,t1,4
order.placed,e1,ann,2026-03-01T10:00:00Z,o1,USD,{TEA},,
ticket.opened,e2,ann,2026-03-02T10:00:00Z,,,,t1,
order.placed,e4,bob,2026-03-01T09:00:00Z,o2,USD,[],,
ticket.rated,e5,bob,2026-03-04T10:00:00Z,,,,t9,five
"""


def test_validate_checks_like_the_worker_and_sends_nothing(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_text(CSV)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}  # never contacted
    result = publish(env, "--validate", str(path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{path}:5: schema_violation: lines: List should have at least 1 item after "
        "validation, not 0",
        f"{path}:6: not a valid CSV row: csat is not a whole number",
    ]
    assert result.stdout.strip() == f"checked {path}: 2 bad line(s); nothing sent"


def test_a_sorted_csv_history_arrives_in_event_time_order(kafka_bootstrap: str,
                                                          namespace: str, tmp_path: Path
                                                          ) -> None:
    path = tmp_path / "history.csv"
    path.write_text("\n".join(CSV.splitlines()[:4]) + "\n")  # the valid rows
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "VALUESTREAM_TOPIC_PREFIX": f"{namespace}-"}
    result = publish(env, "--sort", str(path))
    assert result.returncode == 0, result.stderr
    assert "published 3 event(s) (0 invalid), skipped 0 bad line(s)" in result.stdout
    [order] = read_topic(kafka_bootstrap, f"{namespace}-orders")
    assert orjson.loads(order.value)["lines"] == [
        {"sku": "tea", "quantity": 2, "unit_price": "4.50"}]
    tickets = read_topic(kafka_bootstrap, f"{namespace}-support-tickets")
    assert [orjson.loads(t.value)["event_id"] for t in tickets] == ["e2", "e3"]  # sorted
    assert orjson.loads(tickets[1].value)["csat"] == 4
    assert order.timestamp <= tickets[0].timestamp <= tickets[1].timestamp  # sent in order


def test_a_directory_is_named(tmp_path: Path) -> None:
    result = publish({**os.environ}, str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == f"valuestream: {tmp_path} is a directory; give a file of " \
                                    "events"
