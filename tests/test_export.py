"""``valuestream export``: on the traffic ``make run`` sends, a filtered export names exactly
the customers whose profile (asked over HTTP, as of the exported snapshot) the filter
describes, with their values; the filter language's own rules and errors, pure."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from harness.kafka import read_topic
from harness.worker import ROOT, Worker
from streams.filters import FilterError, parse_fields, parse_filter

SEGMENTS: dict[str, Callable[[dict[str, Any]], bool]] = {  # --where, and the same by hand
    "tier in (gold, platinum) and churn != low":
        lambda p: p["value_tier"] in ("gold", "platinum") and p["churn_risk"]["level"] != "low",
    "orders >= 3 and net_revenue > 100 and not unsubscribed":
        lambda p: p["orders"] >= 3 and Decimal(p["net_revenue"]) > 100 and not p["unsubscribed"],
}


def valuestream(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180, check=True)


@pytest.mark.kafka
def test_an_export_names_exactly_the_customers_of_its_filter(
        make_worker: Callable[..., Worker], kafka_bootstrap: str, namespace: str,
        tmp_path: Path) -> None:
    worker = make_worker(VALUESTREAM_CLOCK="event")
    valuestream(worker.env, "demo", "--customers", "200", "--events", "3000", "--rate", "0")
    worker.wait_settled()
    # One timestamp format in every output: RFC 3339 UTC with Z, never +00:00.
    # (A dead letter's original value is as it came.)
    for topic in ("customer-value", "churn-risk", "follow-ups", "dead-letters"):
        values = [orjson.loads(r.value) for r in read_topic(kafka_bootstrap,
                                                            f"{namespace}-{topic}") if r.value]
        written = [orjson.dumps({k: v for k, v in value.items() if k != "value"})
                   for value in values]
        assert written and not [w for w in written if b"+00:00" in w], topic
    everyone = tmp_path / "all.jsonl"
    valuestream(worker.env, "export", "--fields", "customer_id,as_of", "--format", "jsonl",
                "-o", str(everyone))
    snapshots = [orjson.loads(line) for line in everyone.read_bytes().splitlines()]
    profiles = {}
    for snapshot in snapshots:
        status, profile = worker.profile(snapshot["customer_id"], as_of=snapshot["as_of"])
        assert status == 200
        profiles[snapshot["customer_id"]] = profile
    assert len(profiles) == len(snapshots) >= 150  # the demo's customers with a profile
    for where, by_hand in SEGMENTS.items():
        out = tmp_path / "segment.csv"
        valuestream(worker.env, "export", "--where", where, "-o", str(out))
        with out.open(newline="") as rows:
            exported = {row["customer_id"]: row for row in csv.DictReader(rows)}
        expected = {c for c, profile in profiles.items() if by_hand(profile)}
        assert 0 < len(expected) < len(profiles), where  # the check is not vacuous
        assert set(exported) == expected, where
        for customer, row in exported.items():
            profile = profiles[customer]
            assert (row["value_tier"], row["churn_risk.level"], row["net_revenue"],
                    row["orders"]) == (profile["value_tier"] or "", profile["churn_risk"]["level"],
                                       profile["net_revenue"], str(profile["orders"]))


@pytest.mark.parametrize(("where", "row", "selected"), [
    ("tier in (gold, platinum) and churn = high",
     {"value_tier": "gold", "churn_risk": {"level": "high"}}, True),
    ("tier in (gold, platinum) and churn = high",
     {"value_tier": "silver", "churn_risk": {"level": "high"}}, False),
    ("net_revenue > 100", {"net_revenue": "100.00"}, False),
    ("net_revenue >= 100", {"net_revenue": "100.00"}, True),
    ("net_revenue > 99.995", {"net_revenue": "100.00"}, True),  # exact decimals
    ("orders < 3 or segment = champions", {"orders": 5, "rfm": {"segment": "champions"}}, True),
    ("not unsubscribed", {"unsubscribed": False}, True),
    ("rfm = null", {"rfm": None}, True),
    ("segment != champions", {"rfm": None}, True),  # a null differs from every value
    ("segment = champions", {"rfm": None}, False),
    ("p_alive < 0.5", {"p_alive": None}, False),
    ("last_order_at >= '2026-01-01'", {"last_order_at": "2026-03-01T00:00:00Z"}, True),
    ("tier not in (bronze, silver)", {"value_tier": "gold"}, True),
    ("(tier = gold or tier = silver) and orders > 1", {"value_tier": "silver", "orders": 1},
     False),
])
def test_the_filter_language(where: str, row: dict[str, Any], selected: bool) -> None:
    assert parse_filter(where)(row) is selected


@pytest.mark.parametrize(("where", "named"), [
    ("tierr = gold", "unknown field 'tierr'"),
    ("tier = ", "ends where a value was expected"),
    ("tier in gold", "expected '('"),
    ("(tier = gold", "ends where ')' was expected"),
    ("tier ~ gold", "expected =, !=, <, <=, >, >= or in after 'tier'"),
    ("tier = gold gold", "unexpected 'gold'"),
    ("churn_risk.colour = red", "unknown field 'churn_risk.colour'"),
])
def test_a_bad_filter_is_one_line_naming_the_problem(where: str, named: str) -> None:
    with pytest.raises(FilterError, match=named.replace("(", r"\(").replace(")", r"\)")):
        parse_filter(where)
    clean = subprocess.run([sys.executable, "-m", "streams.cli", "export", "--where", where],
                           cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert clean.returncode == 2 and clean.stderr.count("\n") == 1, clean.stderr
    assert clean.stderr.startswith("valuestream: --where: ")


def test_fields_take_aliases_and_dotted_paths() -> None:
    assert parse_fields("customer_id, tier,churn_risk.score") == [
        ("customer_id", "customer_id"), ("tier", "value_tier"),
        ("churn_risk.score", "churn_risk.score")]
    with pytest.raises(FilterError, match="empty field name"):
        parse_fields("customer_id,,tier")
