"""Who may read customer data: a bearer token when one is configured, only the configured
host names (no DNS rebinding), and none of Faust's own pages; health and metrics stay open
for probes and Prometheus."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.kafka import event, produce
from harness.worker import Worker, http_get

pytestmark = pytest.mark.kafka
TOKEN = "correct-horse-battery-staple"


def test_customer_data_needs_the_token_and_a_known_host(make_worker: Callable[..., Worker],
                                                        kafka_bootstrap: str, namespace: str,
                                                        tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text(f"{TOKEN}\n")  # as a Kubernetes secret is mounted
    worker = make_worker("w1", VALUESTREAM_API_TOKEN_FILE=str(secret),
                         VALUESTREAM_ALLOWED_HOSTS="shop.example")
    produce(kafka_bootstrap, f"{namespace}-", [event(
        "order.placed", "e1", "alice", "2026-05-01T10:00:00Z", order_id="o1", currency="USD",
        lines=[{"sku": "s", "quantity": 1, "unit_price": "5.00"}])])
    worker.wait_settled()
    url = f"{worker.url}/customers/alice"
    bearer = {"Authorization": f"Bearer {TOKEN}"}

    status, body = http_get(url)
    assert (status, body["error"]) == (401, "unauthorized")
    assert http_get(url, {"Authorization": "Bearer not-the-token"})[0] == 401
    assert http_get(url, {"Authorization": TOKEN})[0] == 401  # not a bearer token
    status, body = http_get(url, bearer)
    assert (status, body["revenue"]) == (200, "5.00")
    assert http_get(url, {**bearer, "Host": "shop.example:8080"})[0] == 200
    status, body = http_get(url, {**bearer, "Host": "attacker.example"})
    assert (status, body["error"]) == (421, "unknown_host")

    assert http_get(f"{worker.url}/health")[0] == 200
    assert http_get(f"{worker.url}/metrics")[0] == 200
    for faust_page in ("/table/", "/table/customers/alice/", "/router/"):
        assert http_get(f"{worker.url}{faust_page}")[0] == 404
