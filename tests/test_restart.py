"""Crash safety: a worker killed with SIGKILL mid-stream loses nothing and counts nothing
twice; the final profiles equal those of an uninterrupted run, to the cent."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from streams.demo import DemoTraffic
from tests.helpers import Worker, produce, wait_for

pytestmark = pytest.mark.kafka
EVENTS = 10_000
CUSTOMERS = 300
AS_OF = "2026-03-01T00:00:00Z"


def traffic() -> list[tuple[str, bytes | None, bytes]]:
    demo = DemoTraffic(CUSTOMERS, seed=11, start=datetime(2026, 1, 1, tzinfo=UTC))
    return list(demo.messages(EVENTS))


def all_profiles(worker: Worker) -> dict[str, Any]:
    ids = [f"demo-{n:05d}" for n in range(CUSTOMERS)]
    return {customer: comparable(*worker.profile(customer, as_of=AS_OF)) for customer in ids}


def comparable(status: int, profile: Any) -> tuple[int, Any]:
    """Everything but the churn *level* and the pending *follow-ups*. Both remember when each
    decision was taken (hysteresis; follow-ups already handled): replaying months of history
    on the wall clock, ticks catch up to the present between a customer's events, so two runs
    may take the same decisions at other moments. Money, counts, predictions, the churn score
    and its reasons must all match."""
    if status == 200:
        profile = {**profile, "churn_risk": {**profile["churn_risk"], "level": None},
                   "follow_ups": None}
    return status, profile


def differences(actual: dict[str, Any], expected: dict[str, Any]) -> str:
    """The first customers whose profiles differ, and in which fields: a failure says why."""
    lines = []
    for customer, (status, profile) in expected.items():
        got_status, got = actual[customer]
        if (got_status, got) != (status, profile):
            fields = sorted(k for k in profile if got.get(k) != profile[k]) if (
                status == got_status == 200) else ["status"]
            lines.append(f"{customer}: {fields}")
    return "; ".join(lines[:5])


def matches(worker: Worker, expected: dict[str, Any], seen: dict[str, str]) -> bool:
    actual = all_profiles(worker)
    seen["last"] = differences(actual, expected)
    return actual == expected


def processed(worker: Worker) -> float:
    return sum(worker.events_by_outcome().values())


def test_sigkill_mid_stream_loses_nothing(make_worker: Any, kafka_bootstrap: str,
                                          namespace: str) -> None:
    records = traffic()

    # The reference: an uninterrupted run in an application of its own.
    reference = make_worker("reference", VALUESTREAM_APP_ID=f"{namespace}ref",
                            VALUESTREAM_TOPIC_PREFIX=f"{namespace}ref-")
    produce(kafka_bootstrap, f"{namespace}ref-", records)
    wait_for(lambda: processed(reference) >= EVENTS, 120, "the reference run to finish")
    expected = all_profiles(reference)
    reference.stop()
    assert sum(1 for status, _ in expected.values() if status == 200) > CUSTOMERS * 0.9

    # The interrupted run: killed while the events are still arriving.
    worker = make_worker("victim")
    producing = threading.Thread(target=produce_slowly, args=(kafka_bootstrap, namespace,
                                                              records))
    producing.start()
    wait_for(lambda: processed(worker) >= EVENTS * 0.3, 60, "the worker to be mid-stream")
    worker.kill()
    assert producing.is_alive(), "the kill must happen while events are still arriving"
    producing.join()

    worker.start()
    seen: dict[str, str] = {}
    try:
        wait_for(lambda: matches(worker, expected, seen), 120,
                 "the restarted worker's profiles to equal the uninterrupted run's")

        # And again, with the local state gone: the changelog alone must hold everything.
        worker.kill()
        shutil.rmtree(worker.data_dir)
        worker.start()
        wait_for(lambda: matches(worker, expected, seen), 120,
                 "profiles recovered from the changelog to equal the uninterrupted run's")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; differing: {seen.get('last')}") from None


def produce_slowly(bootstrap: str, namespace: str, records: list[Any]) -> None:
    """Send in chunks over a few seconds, so the worker can be killed mid-stream."""
    chunk = 500
    for start in range(0, len(records), chunk):
        produce(bootstrap, f"{namespace}-", records[start:start + chunk])
        time.sleep(0.25)
