"""``valuestream fit`` end to end: profiles from customer-value in, parameters to
model-params out, and into the running worker; thin data is refused and publishes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from harness.kafka import produce, read_at_least, read_topic
from harness.waiting import wait_for
from harness.worker import ROOT
from streams.demo import DemoTraffic

pytestmark = pytest.mark.kafka
AS_OF = "2026-06-01T00:00:00Z"


def fit(bootstrap: str, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
           "VALUESTREAM_TOPIC_PREFIX": prefix}
    return subprocess.run([sys.executable, "-m", "streams.cli", "fit", "--as-of", AS_OF, *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def test_fit_publishes_parameters_the_worker_takes(make_worker: Any, kafka_bootstrap: str,
                                                   namespace: str) -> None:
    prefix = f"{namespace}-"
    worker = make_worker("w1")
    traffic = DemoTraffic(300, seed=4, start=datetime(2026, 1, 1, tzinfo=UTC),
                          mean_gap_seconds=3600)
    produce(kafka_bootstrap, prefix, traffic.messages(4000))
    worker.wait_settled(90)

    latest: dict[bytes, Any] = {}
    for record in read_topic(kafka_bootstrap, f"{prefix}customer-value"):
        latest[record.key] = orjson.loads(record.value) if record.value else None
    buyers = sum(1 for p in latest.values() if p and p["frequency"] is not None)

    result = fit(kafka_bootstrap, prefix)
    assert result.returncode == 0, result.stderr
    assert f"fitted on {buyers} customers" in result.stderr
    [record] = read_at_least(kafka_bootstrap, f"{prefix}model-params", 1)
    params = orjson.loads(record.value)
    assert (params["n_customers"], params["time_unit"], params["fitted_at"]) == (
        buyers, "day", AS_OF)
    assert set(params["log_likelihood"]) == {"bgnbd", "mbgnbd", "gamma_gamma"}
    fitted_at = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
    wait_for(lambda: worker.metric("valuestream_model_fitted_timestamp_seconds") == fitted_at,
             10, "the worker to take the new parameters")
    cut_offs = [*params["rfm"]["recency_days"], *params["rfm"]["monetary"],
                *params["tiers"].values()]
    assert all(round(c, 2) == c for c in cut_offs)

    reset = fit(kafka_bootstrap, prefix, "--reset")
    assert reset.returncode == 0, reset.stderr
    wait_for(lambda: worker.metric("valuestream_model_fitted_timestamp_seconds") == 0, 10,
             "the worker to take the defaults again")
    latest_params = read_topic(kafka_bootstrap, f"{prefix}model-params")[-1]
    assert orjson.loads(latest_params.value)["fitted_at"] is None


def test_thin_data_is_refused_and_nothing_is_published(kafka_bootstrap: str,
                                                       namespace: str) -> None:
    prefix = f"{namespace}-"
    subprocess.run([sys.executable, "-m", "streams.cli", "topics"], cwd=ROOT, check=True,
                   env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                        "VALUESTREAM_TOPIC_PREFIX": prefix}, capture_output=True)
    result = fit(kafka_bootstrap, prefix)
    assert result.returncode == 1
    assert "too few customers with a purchase to fit: 0" in result.stderr
    assert "nothing published, the parameters in force stay as they are" in result.stderr
    assert read_topic(kafka_bootstrap, f"{prefix}model-params") == []


def test_the_make_run_demo_is_too_short_to_fit(make_worker: Any, kafka_bootstrap: str,
                                                namespace: str) -> None:
    """``make run``'s demo is about a day of history: refused, in one line, nothing sent."""
    prefix = f"{namespace}-"
    worker = make_worker("w1")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "VALUESTREAM_TOPIC_PREFIX": prefix, "VALUESTREAM_APP_ID": namespace}
    subprocess.run([sys.executable, "-m", "streams.cli", "demo", "--customers", "200",
                    "--events", "3000", "--rate", "0"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=120)
    worker.wait_settled(90)
    result = subprocess.run([sys.executable, "-m", "streams.cli", "fit"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "the history spans" in lines[0], result.stderr
    assert "nothing published" in lines[0]
    assert read_topic(kafka_bootstrap, f"{prefix}model-params") == []


@pytest.mark.parametrize(("args", "problem"), [
    (("--input", "/no/such/profiles.jsonl"), "--input /no/such/profiles.jsonl: No such file"),
    ((), "does not exist yet: start a worker or run `valuestream topics` first"),
])
def test_fit_problems_are_one_line(kafka_bootstrap: str, namespace: str,
                                   args: tuple[str, ...], problem: str) -> None:
    result = fit(kafka_bootstrap, f"{namespace}-", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and problem in lines[0], result.stderr
