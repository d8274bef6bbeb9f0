"""Benchmark of ``valuestream fit``: N simulated customers (default 1,000,000), timed from a
JSONL file and from the compacted ``customer-value`` topic of the configured broker.

    python -m benchmarks.fit [N]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson

from streams.publish import open_producer
from streams.settings import Settings

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)


def simulate(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Vectorised MBG/NBD-style histories in whole days, and Gamma-Gamma spend."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(0.8, 1 / 90, n)
    dropout = rng.beta(0.9, 1.8, n)
    age = rng.integers(1, 730, n).astype(float)
    alive = rng.random(n) >= dropout
    t, x, t_x = np.zeros(n), np.zeros(n), np.zeros(n)
    while alive.any():
        t = t + rng.exponential(1 / np.maximum(rate, 1e-9))
        buys = alive & (t <= age)
        x += buys
        t_x = np.where(buys, t, t_x)
        alive = buys & (rng.random(n) >= dropout)
    nu = rng.gamma(4.0, 1 / 15, n)
    spend = rng.gamma(6.0 * np.maximum(x, 1), 1 / nu) / np.maximum(x, 1)
    return {"x": x, "t_x": np.floor(t_x), "age": age, "m": np.where(x > 0, spend, 0.0)}


def profile_lines(data: dict[str, np.ndarray]) -> list[bytes]:
    lines = []
    first_days = [AS_OF.date() - timedelta(days=int(a)) for a in data["age"]]
    for i, first in enumerate(first_days):
        x = int(data["x"][i])
        m = round(float(data["m"][i]), 2)
        lines.append(orjson.dumps({
            "customer_id": f"c{i}",
            "first_order_at": f"{date.isoformat(first)}T10:00:00Z",
            "frequency": x, "recency_days": int(data["t_x"][i]), "monetary_value": f"{m:.2f}",
            "net_revenue": f"{m * (x + 1):.2f}", "margin_rate": 0.3,
        }))
    return lines


def timed_fit(env: dict[str, str], *args: str) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "streams.cli", "fit", "--dry-run", "--as-of",
                    AS_OF.isoformat(), *args], env=env, check=True)
    return time.monotonic() - started


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 1_000_000
    started = time.monotonic()
    lines = profile_lines(simulate(n))
    print(f"simulated {n} customers in {time.monotonic() - started:.1f} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "profiles.jsonl"
        path.write_bytes(b"\n".join(lines))
        file_seconds = timed_fit(dict(os.environ), "--input", str(path))
    prefix = f"benchfit{uuid.uuid4().hex[:6]}-"
    env = {**os.environ, "VALUESTREAM_TOPIC_PREFIX": prefix}
    settings = Settings.from_env(env)
    subprocess.run([sys.executable, "-m", "streams.cli", "topics"], env=env, check=True,
                   capture_output=True)
    producer = open_producer(settings)
    for i, line in enumerate(lines):
        producer.send(settings.topic("customer-value"), key=f"c{i}".encode(), value=line)
    producer.flush()
    topic_seconds = timed_fit(env)
    print(f"fit on {n} customers: {file_seconds:.1f} s from a JSONL file, "
          f"{topic_seconds:.1f} s from the customer-value topic (wall clock, whole command)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
