"""Scaling out: two workers in one group share the partitions, and either one answers for
any customer by forwarding the request to the owner of the customer's partition."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.partitioner.default import murmur2

from harness.kafka import event, produce
from harness.worker import Worker, wait_for

pytestmark = pytest.mark.kafka
PARTITIONS = 4  # as the Worker helper configures


def partition_of(customer_id: str) -> int:
    """Kafka's default partitioner, as producers and Faust's router use it."""
    return (murmur2(customer_id.encode()) & 0x7FFFFFFF) % PARTITIONS


def owned(worker: Worker) -> set[int]:
    return set(worker.health()["active_partitions"])


def test_either_worker_answers_for_every_customer(make_worker: Any, kafka_bootstrap: str,
                                                  namespace: str) -> None:
    first = make_worker("first")
    second = make_worker("second")
    wait_for(lambda: owned(first) and owned(second) and not owned(first) & owned(second)
             and owned(first) | owned(second) == set(range(PARTITIONS)),
             60, "the two workers to split the partitions")

    customers = [f"shopper-{n}" for n in range(24)]
    produce(kafka_bootstrap, f"{namespace}-", [
        event("order.placed", f"e-{c}", c, "2026-05-01T10:00:00Z", order_id=f"o-{c}",
              currency="USD", lines=[{"sku": "S", "quantity": n + 1, "unit_price": "1.25"}])
        for n, c in enumerate(customers)
    ])
    mine = {w.name: owned(w) for w in (first, second)}
    by_owner = {
        name: [c for c in customers if partition_of(c) in parts] for name, parts in mine.items()
    }
    assert by_owner["first"] and by_owner["second"], "both workers must own some customers"

    last: dict[str, Any] = {}

    def answered(worker: Worker, customer: str) -> tuple[int, Any] | None:
        last[customer] = response = worker.profile(customer, "2026-05-02T00:00:00Z")
        return response if response[0] == 200 else None

    for n, customer in enumerate(customers):
        expected_revenue = (n + 1) * 1.25
        for worker in (first, second):
            try:
                status, body = wait_for(lambda w=worker, c=customer: answered(w, c), 30,
                                        f"{customer} from {worker.name}")
            except AssertionError as exc:
                raise AssertionError(
                    f"{exc}; last answer {last.get(customer)}; partition "
                    f"{partition_of(customer)}; owners {mine}; now "
                    f"{ {w.name: owned(w) for w in (first, second)} }") from None
            assert status == 200
            assert body["customer_id"] == customer
            assert body["revenue"] == expected_revenue
