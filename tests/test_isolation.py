"""Two deployments on one cluster with the same app id and different topic prefixes never
share a consumer group, a changelog or a customer, also after one loses its disk."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.kafka import event, produce
from harness.worker import Worker, application_env
from tests.conftest import TEST_SETTINGS

pytestmark = pytest.mark.kafka
WHEN = datetime(2026, 3, 1, tzinfo=UTC).isoformat()


def placed(customer: str, price: str) -> list[tuple[str, bytes | None, bytes | None]]:
    return [event("order.placed", f"{customer}-{price}", customer, WHEN, order_id="o1",
                  currency="USD", lines=[{"sku": "s", "quantity": 1, "unit_price": price}])]


def test_deployments_with_one_app_id_and_two_prefixes_stay_apart(
        kafka_bootstrap: str, namespace: str, tmp_path: Path) -> None:
    workers = {}
    for name, price in (("blue", "10.00"), ("green", "99.00")):
        env = application_env(kafka_bootstrap, namespace, tmp_path / name, **TEST_SETTINGS,
                              VALUESTREAM_TOPIC_PREFIX=f"{namespace}-{name}-")
        workers[name] = Worker(name, env, log_dir=tmp_path)
        workers[name].start()
        produce(kafka_bootstrap, f"{namespace}-{name}-", placed("alice", price))
    try:
        for worker in workers.values():
            worker.wait_settled()
            assert worker.health()["active_partitions"] == [0, 1, 2, 3]  # a group of its own
        assert workers["blue"].profile("alice")[1]["revenue"] == "10.00"
        assert workers["green"].profile("alice")[1]["revenue"] == "99.00"
        blue = workers["blue"]
        blue.stop()  # lose the disk: the state comes back from blue's own changelog
        shutil.rmtree(blue.data_dir)
        blue.start()
        blue.wait(lambda: blue.profile("alice")[0] == 200, 60, "alice restored")
        assert blue.profile("alice")[1]["revenue"] == "10.00"
    finally:
        for worker in workers.values():
            worker.stop()
