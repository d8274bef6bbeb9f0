"""Fixtures: a real Kafka broker for the session, and valuestream workers as processes.

The broker is, in this order: the cluster named by ``KAFKA_BOOTSTRAP_SERVERS``; a
testcontainers Kafka when a Docker engine answers; the project's local KRaft broker
(``deploy/kafka/kafka.sh``, on a port of its own, stopped again at the end); otherwise the
session fails with a message saying what is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.worker import ROOT, Worker, application_env

TEST_BROKER_PORT = os.environ.get("VALUESTREAM_TEST_BROKER_PORT", "19092")


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    return probe.returncode == 0


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    if _docker_answers():
        try:
            from testcontainers.kafka import KafkaContainer
        except ImportError:  # newer testcontainers moved the module
            from testcontainers.community.kafka import KafkaContainer  # type: ignore[no-redef]
        with KafkaContainer("confluentinc/cp-kafka:7.6.1").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            "no Kafka broker: KAFKA_BOOTSTRAP_SERVERS is not set, no Docker engine answers, "
            f"and the local broker needs {' and '.join(missing)} (Java 17+ and Maven)",
            pytrace=False,
        )
    env = {**os.environ, "KAFKA_PORT": TEST_BROKER_PORT}
    script = ROOT / "deploy" / "kafka" / "kafka.sh"
    # A broker already running on the port (someone's own) is used and left running.
    ours = subprocess.run([str(script), "status"], env=env, capture_output=True,
                          check=False).returncode != 0
    started = subprocess.run(
        [str(script), "up"], env=env, capture_output=True, text=True, check=False
    )
    if started.returncode != 0:
        pytest.fail(f"the local Kafka broker did not start:\n{started.stderr}", pytrace=False)
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        if ours:
            subprocess.run([str(script), "down"], env=env, capture_output=True, check=False)


@pytest.fixture
def namespace() -> str:
    """A fresh topic prefix and consumer group, so tests never see each other's data."""
    return f"t{uuid.uuid4().hex[:10]}"


# What the workers of a test get unless the test says otherwise: few partitions (faster
# rebalances), frequent time-driven work, a short session (a killed worker's partitions move
# within seconds).
TEST_SETTINGS = {
    "VALUESTREAM_PARTITIONS": "4",
    "VALUESTREAM_TICK_SECONDS": "0.2",
    "VALUESTREAM_SESSION_TIMEOUT": "6",
}


@pytest.fixture
def make_worker(kafka_bootstrap: str, namespace: str, tmp_path: Path) -> Iterator[type]:
    """Start workers of one application: ``make_worker(name, **env)`` returns a Worker."""
    started: list[Worker] = []

    def start(name: str = "w1", wait: bool = True, **env: str) -> Worker:
        worker = Worker(name, application_env(kafka_bootstrap, namespace, tmp_path / name,
                                              **{**TEST_SETTINGS, **env}), log_dir=tmp_path)
        worker.start(wait=wait)
        started.append(worker)
        return worker

    yield start  # type: ignore[misc]
    for worker in started:
        worker.stop()
