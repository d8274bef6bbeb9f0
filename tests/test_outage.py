"""A broker outage: the worker says so on /health and /ready (503, with the reason), logs
the repeated connection errors once per interval instead of thousands of lines, never
exits, and goes on where it stopped when the broker is back."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.kafka import event, produce
from harness.worker import ROOT, Worker, application_env, http_get
from tests.conftest import TEST_SETTINGS

pytestmark = pytest.mark.kafka
SCRIPT = ROOT / "deploy" / "kafka" / "kafka.sh"
OUTAGE = 25.0  # seconds the broker stays down


def free_pair() -> int:
    """A port whose next port is free too (the broker's controller listens there)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with socket.socket() as other:
            try:
                other.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue


@pytest.fixture
def own_broker() -> Iterator[tuple[str, dict[str, str]]]:
    """A broker of this test's own, which it may stop and start again."""
    if shutil.which("java") is None or shutil.which("mvn") is None:
        pytest.skip("needs Java and Maven to run a broker of its own")
    port = free_pair()
    env = {**os.environ, "KAFKA_PORT": str(port)}
    started = subprocess.run([str(SCRIPT), "up"], env=env, capture_output=True, text=True,
                             check=False)
    assert started.returncode == 0, started.stderr
    try:
        yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run([str(SCRIPT), "down"], env=env, capture_output=True, check=False)
        local = Path(os.environ.get("KAFKA_LOCAL_DIR", ROOT / ".local" / "kafka"))
        shutil.rmtree(local / f"data-{port}", ignore_errors=True)


def errors_in(log: Path) -> int:
    return sum(1 for line in log.read_text(errors="replace").splitlines() if "ERROR" in line)


def test_a_broker_outage_is_reported_and_survived(own_broker: tuple[str, dict[str, str]],
                                                  namespace: str, tmp_path: Path) -> None:
    bootstrap, broker_env = own_broker
    worker = Worker("w1", application_env(bootstrap, namespace, tmp_path / "w1",
                                          **TEST_SETTINGS), log_dir=tmp_path)
    worker.start()
    try:
        order = {"currency": "USD", "lines": [{"sku": "s", "quantity": 1, "unit_price": "3.00"}]}
        produce(bootstrap, f"{namespace}-", [
            event("order.placed", "e1", "alice", "2026-05-01T10:00:00Z", order_id="o1",
                  **order)])
        worker.wait_settled()
        assert http_get(f"{worker.url}/ready")[0] == 200

        subprocess.run([str(SCRIPT), "down"], env=broker_env, capture_output=True, check=True)
        down_at, errors_before = time.monotonic(), errors_in(worker.log_path)
        _, body = worker.wait(lambda: (r := http_get(f"{worker.url}/ready"))[0] == 503
                                   and r, 60, "/ready to report the outage")
        assert body["problems"]
        health_status, health = http_get(f"{worker.url}/health")
        assert health_status == 503
        assert health["problems"]
        worker.wait(lambda: time.monotonic() - down_at >= OUTAGE, OUTAGE + 5, "the outage")
        # Connection errors repeat many times a second; each is written once per 10 s.
        assert errors_in(worker.log_path) - errors_before < 60

        subprocess.run([str(SCRIPT), "up"], env=broker_env, capture_output=True, check=True)
        worker.wait(lambda: http_get(f"{worker.url}/ready")[0] == 200, 120,
                    "/ready after the broker is back")
        produce(bootstrap, f"{namespace}-", [
            event("order.placed", "e2", "alice", "2026-05-02T10:00:00Z", order_id="o2",
                  **order)])
        worker.wait(lambda: worker.profile("alice")[1].get("orders") == 2, 60,
                    "the order sent after the outage")
    finally:
        worker.stop()
