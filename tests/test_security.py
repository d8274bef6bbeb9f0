"""valuestream over a secured Kafka: a broker of its own with a SASL_SSL listener (SCRAM users
made by Kafka's storage tool, a CA and a broker certificate made here with openssl). A worker,
``publish`` and ``fit`` work over it; a wrong password is one line naming the problem."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from harness.waiting import wait_for
from harness.worker import ROOT, Worker, free_port
from schemas.events import TOPIC_OF_TYPE
from streams.decode import Invalid, decode
from streams.demo import DemoTraffic
from tests.conftest import TEST_SETTINGS

pytestmark = pytest.mark.kafka
KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"
USER, PASSWORD = "valuestream", "s3cret-scram-password"


@dataclass
class SecuredBroker:
    bootstrap: str  # the SASL_SSL listener
    ca_file: Path
    password_file: Path

    def env(self, namespace: str, **overrides: str) -> dict[str, str]:
        return {**os.environ, **TEST_SETTINGS, "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
                "KAFKA_SASL_USERNAME": USER, "KAFKA_SASL_PASSWORD_FILE": str(self.password_file),
                "KAFKA_SSL_CA_FILE": str(self.ca_file), "VALUESTREAM_TOPIC_PREFIX": f"{namespace}-",
                "VALUESTREAM_APP_ID": namespace, **overrides}


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certificates(directory: Path) -> tuple[Path, Path]:
    """A CA, and a broker key and certificate for 127.0.0.1 signed by it (PEM)."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "2", "-subj", "/CN=valuestream test CA", cwd=directory)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out",
             "broker.csr", "-subj", "/CN=localhost", cwd=directory)
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "broker.crt", "-days", "2", "-extfile", "san.ext",
             cwd=directory)
    keystore = directory / "broker-keystore.pem"
    keystore.write_text((directory / "broker.key").read_text()
                        + (directory / "broker.crt").read_text())
    return directory / "ca.pem", keystore


@pytest.fixture(scope="module")
def secured_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    for tool in ("openssl", "java"):
        if shutil.which(tool) is None:
            pytest.fail(f"the secured broker needs {tool}", pytrace=False)
    directory = tmp_path_factory.mktemp("secured-broker")
    ca_file, keystore = _certificates(directory)
    plain, controller, secured = free_port(), free_port(), free_port()
    jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    config = directory / "secured.properties"
    config.write_text("\n".join([
        f"listeners=PLAINTEXT://127.0.0.1:{plain},CONTROLLER://127.0.0.1:{controller},"
        f"SASL_SSL://127.0.0.1:{secured}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{plain},SASL_SSL://127.0.0.1:{secured}",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
        "SASL_SSL:SASL_SSL",
        "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512",
        f"listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={jaas}",
        f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={keystore}",
    ]) + "\n")
    env = {**os.environ, "KAFKA_PORT": str(plain), "KAFKA_CONTROLLER_PORT": str(controller),
           "KAFKA_DATA_DIR": str(directory / "data"), "KAFKA_EXTRA_CONFIG": str(config),
           "KAFKA_SCRAM_USERS": f"{USER}:{PASSWORD}"}
    started = subprocess.run([str(KAFKA_SH), "up"], env=env, capture_output=True, text=True,
                             check=False)
    if started.returncode != 0:
        pytest.fail(f"the secured broker did not start:\n{started.stderr}", pytrace=False)
    password_file = directory / "password"
    password_file.write_text(PASSWORD + "\n")
    try:
        yield SecuredBroker(f"127.0.0.1:{secured}", ca_file, password_file)
    finally:
        subprocess.run([str(KAFKA_SH), "down"], env=env, capture_output=True, check=False)


def _valid(value: bytes) -> bool:
    """An event the worker accepts (the demo also sends broken ones, on purpose)."""
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(event, dict) or event.get("type") not in TOPIC_OF_TYPE:
        return False
    key = str(event.get("customer_id")).encode()
    return not isinstance(decode(TOPIC_OF_TYPE[event["type"]], key, value), Invalid)


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_worker_publish_and_fit_over_sasl_ssl(secured_broker: SecuredBroker, namespace: str,
                                              tmp_path: Path) -> None:
    env = secured_broker.env(namespace)
    worker = Worker("w1", {**env, "VALUESTREAM_DATA_DIR": str(tmp_path / "w1")},
                    log_dir=tmp_path)
    worker.start()
    try:
        traffic = DemoTraffic(200, seed=4, start=datetime(2026, 1, 1, tzinfo=UTC),
                              mean_gap_seconds=3600)
        history = tmp_path / "history.jsonl"
        events = [orjson.loads(value) for _, _, value in traffic.messages(3000)
                  if value is not None and _valid(value)]
        history.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
        published = cli(env, "publish", str(history))
        assert published.returncode == 0, published.stderr
        worker.wait_settled(90)
        assert worker.profile(events[0]["customer_id"])[0] == 200

        fitted = cli(env, "fit", "--as-of", "2026-06-01T00:00:00Z")
        assert fitted.returncode == 0, fitted.stderr
        assert "published to" in fitted.stderr
        fitted_at = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
        wait_for(lambda: worker.metric("valuestream_model_fitted_timestamp_seconds")
                 == fitted_at, 10, "the worker to take the new parameters")
    finally:
        worker.stop()


@pytest.mark.parametrize("command", ["topics", "worker", "publish"])
def test_a_wrong_password_is_one_line(secured_broker: SecuredBroker, namespace: str,
                                      tmp_path: Path, command: str) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password")
    env = secured_broker.env(namespace, KAFKA_SASL_PASSWORD_FILE=str(wrong),
                             VALUESTREAM_DATA_DIR=str(tmp_path / "data"))
    events = tmp_path / "events.jsonl"
    events.write_text('{"type": "email.sent", "customer_id": "c1"}\n')
    done = cli(env, command, *([str(events)] if command == "publish" else []), timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "authentication failed for user 'valuestream'" in lines[0]


def test_a_certificate_from_another_ca_is_one_line(secured_broker: SecuredBroker,
                                                   namespace: str, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    other_ca, _ = _certificates(other)
    done = cli(secured_broker.env(namespace, KAFKA_SSL_CA_FILE=str(other_ca)), "topics",
               timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "certificate" in lines[0].lower(), done.stderr
