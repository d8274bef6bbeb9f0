"""``valuestream forward``: follow-ups posted to a real local HTTP server that fails a share
of the posts on purpose (errors and answers too slow for the forwarder's timeout), with a
SIGKILL of the forwarder during delivery. Every event arrives at least once, signed, and in
order per customer; the two the server never accepts are dead letters with their codes."""

from __future__ import annotations

import hashlib
import hmac
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from harness.kafka import produce, read_at_least
from harness.waiting import wait_for
from harness.worker import ROOT, application_env, free_port, http_get
from streams.forward import Webhook
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.conftest import TEST_SETTINGS

SECRET = b"s3cret-for-the-test"
CLIENT_TIMEOUT = 0.5
REJECTED, NEVER_OK = "c0-reject-me", "c1-never-ok"  # answered 400, and 503 on every attempt


class Receiver:
    """The marketing tool: records what it accepted; fails some posts the first time or two
    (a 500, or an answer slower than the forwarder waits), as planned per event."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted: list[tuple[str, str]] = []  # (customer id, event id), as they came
        self.bad_signatures = 0
        self.failures_left: dict[str, int] = {}
        self.random = random.Random(13)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.answer(body, self.headers.get("X-Valuestream-Signature"),
                                         self.headers.get("Idempotency-Key"))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def answer(self, body: bytes, signed: str | None, idempotency_key: str | None) -> int:
        event = orjson.loads(body)
        expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        if signed != expected or idempotency_key != event["event_id"]:
            with self.lock:
                self.bad_signatures += 1
            return 401
        if event["event_id"] == REJECTED:
            return 400
        if event["event_id"] == NEVER_OK:
            return 503
        with self.lock:
            left = self.failures_left.setdefault(
                event["event_id"], self.random.choices([0, 1, 2], [80, 15, 5])[0])
            self.failures_left[event["event_id"]] = max(left - 1, 0)
        if left and self.random.random() < 0.75:
            return 500
        if left:
            time.sleep(CLIENT_TIMEOUT + 0.3)  # the forwarder has given up on this post
            return 200
        with self.lock:
            self.accepted.append((event["customer_id"], event["event_id"]))
        return 200

    def delivered(self) -> set[str]:
        with self.lock:
            return {event_id for _, event_id in self.accepted}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.server.shutdown()


def follow_up(customer: str, n: int) -> tuple[str, bytes, bytes]:
    body = {"event_id": f"{customer}-{n}", "type": "follow_up.due", "customer_id": customer,
            "occurred_at": f"2026-05-01T10:{n // 60:02d}:{n % 60:02d}Z",
            "reason": "first_order_check_in", "priority": 50}
    return "follow-ups", customer.encode(), orjson.dumps(body)


@pytest.mark.kafka
def test_every_event_arrives_in_order_through_failures_and_a_kill(
        kafka_bootstrap: str, namespace: str, tmp_path: Path, receiver: Receiver) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET + b"\n")
    env = application_env(kafka_bootstrap, namespace, tmp_path / "data", **TEST_SETTINGS)
    metrics_port = free_port()
    command = [sys.executable, "-m", "streams.cli", "forward", "follow-ups",
               "--url", receiver.url, "--secret-file", str(secret_file), "--from-beginning",
               "--attempts", "4", "--timeout", str(CLIENT_TIMEOUT), "--backoff", "0.05",
               "--metrics-port", str(metrics_port)]
    log = (tmp_path / "forward.log").open("ab")

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    customers = [f"c{n}" for n in range(25)]
    records = [follow_up(c, n) for n in range(16) for c in customers]
    records.insert(40, ("follow-ups", b"c0", orjson.dumps(
        {"event_id": REJECTED, "customer_id": "c0"})))
    records.insert(90, ("follow-ups", b"c1", orjson.dumps(
        {"event_id": NEVER_OK, "customer_id": "c1"})))
    expected = [orjson.loads(value)["event_id"] for _, _, value in records
                if orjson.loads(value)["event_id"] not in (REJECTED, NEVER_OK)]

    ensure_topics(Settings.from_env(env))
    forwarder = start()

    def alive() -> None:
        assert forwarder.poll() is None, (tmp_path / "forward.log").read_text()[-3000:]

    try:
        produce(kafka_bootstrap, f"{namespace}-", records)
        wait_for(lambda: len(receiver.delivered()) >= 100, 90, "a first share delivered",
                 alive=alive)
        forwarder.send_signal(signal.SIGKILL)
        forwarder.wait(10)
        at_kill = len(receiver.delivered())
        assert at_kill < len(expected)  # killed during the delivery
        forwarder = start()
        wait_for(lambda: receiver.delivered() >= set(expected), 120,
                 "every event delivered after the restart", alive=alive)

        # In order per customer: each customer's events first arrived in the order sent.
        first_arrivals: dict[str, list[str]] = {}
        for customer, event_id in receiver.accepted:
            if event_id not in first_arrivals.setdefault(customer, []):
                first_arrivals[customer].append(event_id)
        for customer in customers:
            assert first_arrivals[customer] == [e for e in expected
                                                if e.startswith(f"{customer}-")]
        assert receiver.bad_signatures == 0

        letters = {orjson.loads(r.value)["error"]["code"]: orjson.loads(r.value)
                   for r in read_at_least(kafka_bootstrap, f"{namespace}-dead-letters", 2)}
        assert sorted(letters) == ["webhook_failed", "webhook_rejected"]
        assert orjson.loads(letters["webhook_rejected"]["value"])["event_id"] == REJECTED
        assert orjson.loads(letters["webhook_failed"]["value"])["event_id"] == NEVER_OK
        assert letters["webhook_failed"]["source_topic"] == f"{namespace}-follow-ups"

        def metrics() -> str | None:
            status, text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
            return text if status == 200 and "valuestream_forward_events_total" in text else None

        text = wait_for(metrics, 30, "the forwarder's metrics")
        assert 'result="5xx"' in text and 'result="timeout"' in text
        assert 'outcome="delivered"' in text
    finally:
        forwarder.send_signal(signal.SIGTERM)
        try:
            forwarder.wait(30)
        except subprocess.TimeoutExpired:
            forwarder.kill()
    assert forwarder.returncode == 0, (tmp_path / "forward.log").read_text()[-3000:]


def test_backoff_doubles_and_honours_retry_after_within_the_cap() -> None:
    webhook = Webhook("http://x", None, attempts=8, timeout=1.0, first_pause=0.5)
    assert [webhook.pause(n, None) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert webhook.pause(1, 7.0) == 7.0 and webhook.pause(1, 600.0) == 30
