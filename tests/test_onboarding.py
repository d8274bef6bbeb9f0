"""Bringing history in, as the README's recipe says (*Bringing history in*): a shop's past
events, exported in no particular order as JSONL or as CSV, are checked (``publish
--validate``), published in event-time order (``publish --sort``) to a worker on the event
clock, and the worker then goes live on the wall clock.

The history is the scripted one of ``test_followups_replay``, also sent paced (one timestamp
at a time, each step waited for) as the reference: both files give exactly its churn-risk
and follow-up events, ids and all, and its follow-ups are the ones worked out by hand there;
the profiles are exact; and going live adds no duplicate and nothing dated before the
history's end."""

from __future__ import annotations

import csv
import io
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from harness.kafka import read_topic
from harness.worker import ROOT, Worker
from tests.test_followups_replay import (
    EXPECTED,
    PARTITIONS,
    at,
    iso,
    outputs,
    run,
    scripted_history,
)

pytestmark = pytest.mark.kafka


def export(events: list[dict[str, Any]], fmt: str, path: Path) -> None:
    """The events as a shop's export might have them: shuffled, JSONL or CSV."""
    if fmt == "jsonl":
        path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
        return
    columns = sorted({column for e in events for column in e})
    out = io.StringIO()
    writer = csv.DictWriter(out, columns)
    writer.writeheader()
    for e in events:
        writer.writerow({k: orjson.dumps(v).decode() if k == "lines" else v
                         for k, v in e.items()})
    path.write_text(out.getvalue())


def publish(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", "publish", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def follow_up_ids(bootstrap: str, prefix: str) -> list[str]:
    return [orjson.loads(r.value)["event_id"] for r in read_topic(bootstrap,
                                                                  f"{prefix}follow-ups")]


def onboard(make_worker: Callable[..., Worker], bootstrap: str, name: str, fmt: str,
            tmp_path: Path) -> tuple[Any, Any, Worker]:
    """The recipe, step by step; the outputs of the history, and the worker, gone live."""
    events = [orjson.loads(record[2]) for _, record in scripted_history()]
    random.Random(5).shuffle(events)
    path = tmp_path / f"history.{fmt}"
    export(events, fmt, path)
    prefix = f"{name}-"
    settings = {"VALUESTREAM_APP_ID": name, "VALUESTREAM_TOPIC_PREFIX": prefix,
                "VALUESTREAM_PARTITIONS": str(PARTITIONS), "VALUESTREAM_INPUT_IDLE_MS": "100"}

    checked = publish({**os.environ, **settings}, "--validate", str(path))
    assert checked.returncode == 0, checked.stderr
    worker = make_worker(name, VALUESTREAM_CLOCK="event", **settings)
    sent = publish(worker.env, "--sort", str(path))
    assert sent.returncode == 0, sent.stderr
    worker.wait_settled(90)
    worker.stop()
    history = outputs(bootstrap, prefix)

    worker.env["VALUESTREAM_CLOCK"] = "wall"  # going live: same state, the wall clock
    went_live = iso(datetime.now(UTC).replace(microsecond=0))
    worker.start()
    worker.wait(lambda: (worker.health()["now"] or "") >= went_live and worker.health()[
        "settled"], 60, "the live clock's due work done")
    return history, outputs(bootstrap, prefix), worker


def test_history_from_jsonl_and_csv_then_live(make_worker: Callable[..., Worker],
                                              kafka_bootstrap: str, namespace: str,
                                              tmp_path: Path) -> None:
    paced = run(make_worker, kafka_bootstrap, f"{namespace}paced", scripted_history(),
                paced=True)
    runs = {fmt: onboard(make_worker, kafka_bootstrap, f"{namespace}{fmt}", fmt, tmp_path)
            for fmt in ("jsonl", "csv")}
    (churn, follow_ups), _, worker = runs["jsonl"]
    assert sorted((c, r, d) for c, r, d, _ in follow_ups) == EXPECTED
    for fmt, (history, _, _) in runs.items():  # the same events, ids and all
        assert history == paced, (
            f"{fmt}: churn-risk only onboarded {sorted(history[0] - paced[0])}, only paced "
            f"{sorted(paced[0] - history[0])}; follow-ups only onboarded "
            f"{sorted(history[1] - paced[1])}, only paced {sorted(paced[1] - history[1])}")
    assert {("rae", "low", "medium"), ("rae", "medium", "low"), ("jo", "medium", "high")} <= {
        (c, p, n) for c, p, n, _, _ in churn}

    status, jo = worker.profile("jo")
    assert status == 200 and (jo["orders"], jo["revenue"], jo["currency"]) == (
        3, "15000.00", "USD")

    for fmt, ((history_churn, history_follow_ups), (live_churn, live_follow_ups), _) in (
            runs.items()):
        prefix = f"{namespace}{fmt}-"
        ids = follow_up_ids(kafka_bootstrap, prefix)
        assert [i for i, n in Counter(ids).items() if n > 1] == []  # no duplicate at the switch
        new_follow_ups = live_follow_ups - history_follow_ups
        assert {(c, r, d) for c, r, d, _ in new_follow_ups} & {
            (c, r, d) for c, r, d, _ in history_follow_ups} == set()
        assert all(d >= iso(at(15, 12)) for _, _, d, _ in new_follow_ups), sorted(
            new_follow_ups)
        assert all(o >= iso(at(15, 12)) for _, _, _, o, _ in live_churn - history_churn)
