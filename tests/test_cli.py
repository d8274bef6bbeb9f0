"""The command line: bad arguments and bad configuration end in one line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.worker import ROOT


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VALUESTREAM_")}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env={**clean, **env},
        capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.mark.parametrize(("args", "env", "named"), [
    (("worker", "--web-port", "eighty"), {}, "--web-port"),
    (("demo", "--events", "-3"), {}, "--events"),
    (("frobnicate",), {}, "frobnicate"),
    (("worker",), {"VALUESTREAM_PARTITIONS": "many"}, "VALUESTREAM_PARTITIONS"),
    (("topics",), {"VALUESTREAM_CLOCK": "sundial"}, "VALUESTREAM_CLOCK"),
    (("publish", "events.jsonl"), {"KAFKA_BOOTSTRAP_SERVERS": "nohost"},
     "KAFKA_BOOTSTRAP_SERVERS"),
    (("forward", "follow-ups", "--url", "ftp://hook"), {}, "--url"),
    (("forward", "follow-ups", "--url", "http://hook", "--secret-file", "no/such/file"), {},
     "--secret-file"),
    (("forward", "follow-ups", "--url", "http://hook", "--timeout", "0"), {}, "--timeout"),
    (("forward", "orders", "--url", "http://hook"), {}, "orders"),
])
def test_one_line_error_naming_the_problem(args: tuple[str, ...], env: dict[str, str],
                                           named: str) -> None:
    result = run(*args, **env)
    assert result.returncode == 2
    assert named in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_publish_of_a_missing_file_is_one_line() -> None:
    result = run("publish", "no-such-file.jsonl")
    assert result.returncode == 2
    assert result.stderr.strip() == "valuestream: no such file: no-such-file.jsonl"
