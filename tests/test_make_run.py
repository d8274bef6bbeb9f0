"""``make run``'s script brings up a working system and prints where to look."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from harness.kafka import read_topic
from harness.waiting import wait_for
from harness.worker import ROOT, free_port, http_get

pytestmark = pytest.mark.kafka
BURST = 3_000  # the events deploy/run.sh sends at once


def as_in_a_terminal() -> None:
    """Ctrl-C's signal as a terminal delivers it. A process started in the background by a
    non-interactive shell (a CI runner, ``nohup``, ``&``) has SIGINT ignored, its children
    inherit that, and a shell cannot trap a signal ignored when it started."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def test_run_script_serves_the_urls_it_prints(kafka_bootstrap: str, namespace: str,
                                              tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "VALUESTREAM_TOPIC_PREFIX": f"{namespace}-", "VALUESTREAM_APP_ID": namespace,
           "VALUESTREAM_WEB_PORT": str(port), "VALUESTREAM_DATA_DIR": str(tmp_path / "data"),
           "VALUESTREAM_SESSION_TIMEOUT": "6"}
    output = tmp_path / "run.out"
    with output.open("wb") as sink:
        run = subprocess.Popen([str(ROOT / "deploy" / "run.sh")], cwd=ROOT, env=env,
                               stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                               preexec_fn=as_in_a_terminal)
    try:
        printed = wait_for(lambda: (text := output.read_text()) and
                           "valuestream is running" in text and text, 150,
                           "make run to say it is running")
        profile_url = re.search(r"a customer profile\s+(\S+)", printed)
        metrics_url = re.search(r"metrics\s+(\S+)", printed)
        assert profile_url and metrics_url, printed
        _, body = wait_for(lambda: (r := http_get(profile_url.group(1)))[0] == 200 and r,
                           30, "the printed profile URL to answer")
        assert body["customer_id"] == "demo-00001"
        overview_url = re.search(r"the shop's overview\s+(\S+)", printed)
        assert overview_url, printed
        status, page = http_get(overview_url.group(1))
        assert status == 200 and 'id="customers"' in page
        metrics: Any = http_get(metrics_url.group(1))[1]
        assert "valuestream_events_total" in metrics

        def burst_processed() -> list[Sample] | None:
            text = http_get(metrics_url.group(1))[1]
            samples = [sample for family in text_string_to_metric_families(text)
                       for sample in family.samples]
            inputs = sum(s.value for s in samples if s.name == "valuestream_events_total"
                         and not s.labels["topic"].endswith("-referrals"))  # not internal
            return samples if inputs >= BURST else None

        wait_for(burst_processed, 60, "the demo burst to be processed")
        # The demo's EUR orders (about one in ten) are priced with the shipped rates: the
        # only orders without a rate are the demo's deliberately broken ones (XTS).
        letters = [orjson.loads(r.value) for r in
                   read_topic(kafka_bootstrap, f"{namespace}-dead-letters")]
        currencies = {orjson.loads(d["value"])["currency"] for d in letters
                      if d["error"]["code"] == "unknown_currency"}
        assert currencies == {"XTS"}
    finally:
        os.killpg(run.pid, signal.SIGINT)
        run.wait(timeout=60)
    assert "worker stopped" in output.read_text()
