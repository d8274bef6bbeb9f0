"""Scaling out: two workers in one group share the partitions, and either one answers for
any customer by forwarding the request to the owner of the customer's partition."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from kafka.partitioner.default import murmur2

from harness.kafka import event, produce
from harness.waiting import wait_for
from harness.worker import Worker

pytestmark = pytest.mark.kafka
PARTITIONS = 4  # as the Worker helper configures
TOKEN = "s3cret-token-of-the-shop"


def partition_of(customer_id: str) -> int:
    """Kafka's default partitioner, as producers and Faust's router use it."""
    return (murmur2(customer_id.encode()) & 0x7FFFFFFF) % PARTITIONS


def owned(worker: Worker) -> set[int]:
    return set(worker.health()["active_partitions"])


def test_either_worker_answers_for_every_customer(make_worker: Any, kafka_bootstrap: str,
                                                  namespace: str) -> None:
    # With an API token: a forwarded request carries it to the owner.
    first = make_worker("first", VALUESTREAM_API_TOKEN=TOKEN)
    second = make_worker("second", VALUESTREAM_API_TOKEN=TOKEN)
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
        expected_revenue = f"{Decimal('1.25') * (n + 1):.2f}"
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


def test_a_dead_owner_means_503_until_its_partitions_move(make_worker: Any, kafka_bootstrap: str,
                                                          namespace: str) -> None:
    """Never a 500 or a false 404 while a dead worker's partitions move to the survivor."""
    survivor, doomed = make_worker("survivor"), make_worker("doomed")
    wait_for(lambda: owned(survivor) and owned(doomed)
             and owned(survivor) | owned(doomed) == set(range(PARTITIONS)),
             60, "the two workers to split the partitions")
    lost = owned(doomed)
    customer = next(f"c{n}" for n in range(1000) if partition_of(f"c{n}") in lost)
    produce(kafka_bootstrap, f"{namespace}-", [event(
        "order.placed", "e1", customer, "2026-05-01T10:00:00Z", order_id="o1", currency="USD",
        lines=[{"sku": "S", "quantity": 1, "unit_price": "2.50"}])])
    wait_for(lambda: survivor.profile(customer)[0] == 200, 30, "the profile via the owner")
    doomed.kill()
    answers: list[tuple[int, str | None]] = []

    def moved() -> bool:
        status, body = survivor.profile(customer)
        answers.append((status, body.get("error") if status != 200 else None))
        return status == 200 and body["revenue"] == "2.50"

    wait_for(moved, 60, "the survivor to take over")
    assert {status for status, _ in answers} <= {200, 503}, answers
    assert {code for status, code in answers if status == 503} <= {
        "owner_unreachable", "no_owner", "recovering", "catching_up"}, answers
