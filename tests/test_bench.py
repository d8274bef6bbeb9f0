"""``make bench`` at a tiny scale: every measure is taken and reported (no timing is judged)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from benchmarks import endtoend

pytestmark = pytest.mark.kafka


def test_bench_takes_every_measure(kafka_bootstrap: str, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    out = tmp_path / "results"
    assert endtoend.main(["--events", "1500", "--customers", "150", "--scale", "300", "100",
                          "--latency-seconds", "3", "--out", str(out)]) == 0

    [written] = out.glob("bench-*.json")
    results = orjson.loads(written.read_bytes())
    main = results["throughput"]
    assert (main["events"], main["customers"]) == (1500, 150)
    assert main["outputs"] > 0 and main["peak_rss_bytes"] > 0 and main["state_bytes"] > 0
    assert results["baseline"]["events_per_s"] > 0
    assert results["domain_only"]["events"] == 1500
    for phase in ("latency", "latency_half_capacity"):
        latency = results[phase]
        assert latency["sent"] > 0 and latency["resolved"] == latency["sent"]
        assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
        assert latency["worker_cpu_s"] > 0
    half = results["latency_half_capacity"]["offered_per_s"]
    assert half == pytest.approx(results["latency"]["capacity_per_s"] / 2, abs=0.1)
    assert [run["customers"] for run in results["scaling"]["runs"]] == [100, 300]
    # Every one of the large run's customers was given state, and all of it came back.
    assert results["recovery"]["customers"] == 300
    assert results["recovery"]["changelog_records"] >= 300
    assert results["recovery"]["overview_ms"] > 0
    plain = results["without_relationships"]
    assert plain["events_per_s"] > 0 and plain["domain_only_events_per_s"] > 0
    table = written.with_suffix(".md").read_text()
    assert "| recovery of 300 customers" in table and "ratio to the baseline" in table
    assert "| the overview page (`/ui`) over 300 customers" in table
    assert "what interests, cross-sell and referrals cost" in table
