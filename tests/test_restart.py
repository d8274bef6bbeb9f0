"""Crash safety: a worker killed with SIGKILL five times while events arrive (once with its
local state deleted) ends exactly where an uninterrupted run does.

On the event clock, with 20,000 events of the demo mix over 1,000 customers:

* every profile equals the uninterrupted run's, to the cent, including churn level and
  pending follow-ups;
* the ids on ``churn-risk`` and ``follow-ups`` are the uninterrupted run's (repeats
  allowed, nothing missing, nothing extra);
* every customer's last ``customer-value`` record is the profile served over HTTP.
"""

from __future__ import annotations

import random
import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from harness.kafka import Record, produce, read_topic
from harness.worker import Worker
from streams.demo import DemoTraffic

pytestmark = pytest.mark.kafka
EVENTS = 20_000
CUSTOMERS = 1_000
KILLS = 5
AS_OF = "2026-03-01T00:00:00Z"
IDS = [f"demo-{n:05d}" for n in range(CUSTOMERS)]


def traffic() -> list[Record]:
    # Without referrals: what a referrer decides depends on when their referred customers'
    # updates arrive from other partitions (README, *Referrals*); tests/test_referrals.py
    # kills a worker during a referral chain and checks the totals.
    demo = DemoTraffic(CUSTOMERS, seed=11, start=datetime(2026, 1, 1, tzinfo=UTC),
                       mean_gap_seconds=120, relationships=False)
    return list(demo.messages(EVENTS))


# What depends on the cross-sell model, which every worker learns live from all partitions
# (README, *Cross-sell*): the one part of the outputs a replay need not repeat exactly.
LIVE_MODEL_FIELDS = {"recommended_products"}
LIVE_MODEL_REASONS = {"cross_sell"}


def profiles(worker: Worker) -> dict[str, tuple[int, Any]]:
    found = {}
    for customer in IDS:
        status, profile = worker.profile(customer, as_of=AS_OF)
        if status == 200:
            profile = {k: v for k, v in profile.items() if k not in LIVE_MODEL_FIELDS}
        found[customer] = (status, profile)
    return found


def emitted_ids(bootstrap: str, prefix: str) -> dict[str, set[str]]:
    return {topic: {event["event_id"] for r in read_topic(bootstrap, f"{prefix}{topic}")
                    if (event := orjson.loads(r.value)).get("reason") not in LIVE_MODEL_REASONS}
            for topic in ("churn-risk", "follow-ups")}


def last_snapshots_are_served(worker: Worker, bootstrap: str, prefix: str) -> None:
    latest: dict[str, Any] = {}
    for record in read_topic(bootstrap, f"{prefix}customer-value"):
        latest[record.key.decode()] = orjson.loads(record.value) if record.value else None
    assert latest, "no snapshots"
    wrong = []
    for customer, snapshot in latest.items():
        if snapshot is None:
            if worker.profile(customer)[0] != 404:
                wrong.append(f"{customer}: tombstone but a profile is served")
            continue
        status, served = worker.profile(customer, as_of=snapshot["as_of"])
        if (status, served) != (200, snapshot):
            fields = sorted(k for k in snapshot if served.get(k) != snapshot[k])
            wrong.append(f"{customer}: {fields}")
    assert not wrong, f"{len(wrong)} last snapshots differ from the served profile: {wrong[:5]}"


def describe(bootstrap: str, prefix: str, topic: str, ids: set[str]) -> list[Any]:
    """A few of the events with these ids, as written."""
    records = [orjson.loads(r.value) for r in read_topic(bootstrap, f"{prefix}{topic}")]
    return [{k: v for k, v in e.items() if k not in ("context", "suggested_action")}
            for e in records if e["event_id"] in ids][:4]


def differences(actual: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """The customers whose profiles differ, and in which fields: a failure says why."""
    lines = []
    for customer, (status, profile) in expected.items():
        got_status, got = actual[customer]
        if (got_status, got) != (status, profile):
            fields = sorted(k for k in profile if got.get(k) != profile[k]) if (
                status == got_status == 200) else [f"status {got_status}"]
            lines.append(f"{customer}: {fields}")
    return lines


def test_five_kills_change_nothing(make_worker: Callable[..., Worker], kafka_bootstrap: str,
                                   namespace: str) -> None:
    records = traffic()

    # The reference: an uninterrupted run in an application of its own.
    ref_prefix = f"{namespace}ref-"
    reference = make_worker("reference", VALUESTREAM_APP_ID=f"{namespace}ref",
                            VALUESTREAM_TOPIC_PREFIX=ref_prefix, VALUESTREAM_CLOCK="event")
    produce(kafka_bootstrap, ref_prefix, records, fast=True)
    reference.wait_settled(180)
    expected = profiles(reference)
    expected_ids = emitted_ids(kafka_bootstrap, ref_prefix)
    assert sum(1 for status, _ in expected.values() if status == 200) > CUSTOMERS * 0.9
    assert all(expected_ids.values()), f"the reference emitted too little: {expected_ids}"
    reference.stop()

    # The interrupted run: killed five times while the events are still arriving.
    prefix = f"{namespace}-"
    worker = make_worker("victim", VALUESTREAM_CLOCK="event")
    kills_done = threading.Event()
    producing = threading.Thread(target=produce_slowly,
                                 args=(kafka_bootstrap, prefix, records, kills_done))
    producing.start()
    rng = random.Random(7)
    last_seen = ""
    for kill in range(KILLS):
        time.sleep(rng.uniform(1.0, 5.0))
        assert producing.is_alive(), f"kill {kill + 1} must happen while events arrive"
        worker.kill()
        if kill == 2:
            shutil.rmtree(worker.data_dir)  # this time the changelog alone must hold it all
        worker.start()
    kills_done.set()
    producing.join()

    def same() -> bool:
        nonlocal last_seen
        wrong = differences(profiles(worker), expected)
        last_seen = "; ".join(wrong[:5])
        return not wrong

    try:
        worker.wait(same, 180, "the restarted worker's profiles to equal the reference's")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; differing: {last_seen}") from None
    got = emitted_ids(kafka_bootstrap, prefix)
    for topic, ids in expected_ids.items():
        assert got[topic] == ids, (
            f"{topic}: {len(ids - got[topic])} missing, e.g. "
            f"{describe(kafka_bootstrap, ref_prefix, topic, ids - got[topic])}; "
            f"{len(got[topic] - ids)} extra, e.g. "
            f"{describe(kafka_bootstrap, prefix, topic, got[topic] - ids)}")
    last_snapshots_are_served(worker, kafka_bootstrap, prefix)


def produce_slowly(bootstrap: str, prefix: str, records: list[Record],
                   kills_done: threading.Event) -> None:
    """Send in time order, in small chunks, so that kills land mid-load; the last tenth
    waits until the kills are done."""
    chunk = 200
    last_part = len(records) - len(records) // 10
    for start in range(0, last_part, chunk):
        produce(bootstrap, prefix, records[start:min(start + chunk, last_part)])
        time.sleep(0.5)
    kills_done.wait(timeout=600)
    produce(bootstrap, prefix, records[last_part:])
