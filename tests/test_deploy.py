"""The deployment files are real: the compose file is valid Compose and names only settings
that exist, the Kubernetes manifests pass a schema check, the alert rules pass
``promtool check rules``, and every metric the dashboard and the rules use is exported by a
live worker, which a real Prometheus scrapes."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema.validators import validator_for

from harness.kafka import event, produce
from harness.waiting import wait_for
from harness.worker import ROOT, Worker, free_port, http_get
from streams.settings import VARIABLES

COMPOSE_GO = "github.com/compose-spec/compose-go/v2@v2.4.4"  # the loader docker compose uses
SETTINGS = {v.name for v in VARIABLES}
METRIC = re.compile(r"\bvaluestream_[a-z_]+")
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "valuestream.json"


def compose_schema() -> dict[str, Any]:
    """The Compose specification's JSON Schema, from the compose-go module (Go's module proxy)."""
    if shutil.which("go") is None:
        pytest.fail("checking the compose file needs Go (it fetches the Compose schema)",
                    pytrace=False)
    cache = ROOT / ".local" / "gomod"
    env = {**os.environ, "GOMODCACHE": str(cache), "GOFLAGS": "-modcacherw",
           "GO111MODULE": "on"}
    done = subprocess.run(["go", "mod", "download", "-json", COMPOSE_GO], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=True)
    directory = Path(json.loads(done.stdout)["Dir"])
    schema: dict[str, Any] = json.loads((directory / "schema" / "compose-spec.json").read_text())
    return schema


def valuestream_settings(environment: dict[str, Any]) -> set[str]:
    return {name for name in environment if name.startswith(("KAFKA_", "VALUESTREAM_"))}


def test_the_compose_file_is_valid_and_names_real_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    schema = compose_schema()
    validator = validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(compose)]
    assert errors == []
    services = compose["services"]
    workers = [name for name, s in services.items() if s.get("build") == "."]
    assert {"worker-1", "worker-2", "worker-3", "demo"} <= set(workers)
    for name in workers:
        assert valuestream_settings(services[name]["environment"]) <= SETTINGS, name
    # The topics exist with valuestream's partition count before any worker or producer runs
    # (a topic the broker created on first use would have its default count).
    assert services["topics"]["command"] == ["topics"]
    for name in set(workers) - {"topics"}:
        assert services[name]["depends_on"]["topics"] == {
            "condition": "service_completed_successfully"}, name
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    pom = (ROOT / "deploy" / "kafka" / "pom.xml").read_text()
    version = re.search(r"<kafka.version>(.+)</kafka.version>", pom)
    assert version and services["kafka"]["image"] == f"apache/kafka:{version[1]}"
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
    scraped = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = scraped["scrape_configs"][0]["static_configs"][0]["targets"]
    assert {t.split(":")[0] for t in targets} == {"worker-1", "worker-2", "worker-3"}


def test_the_dockerfile_installs_as_the_readme_says() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [p.rstrip("*") for p in found]
    for package in packages:
        assert f"COPY {package} {package}" in dockerfile
    assert "RUN pip install --no-cache-dir ." in dockerfile  # as `make`: pip install of the project
    assert 'ENTRYPOINT ["valuestream"]' in dockerfile
    assert "valuestream" in project["project"]["scripts"]
    assert re.search(r"^USER valuestream$", dockerfile, re.MULTILINE)


def test_the_kubernetes_manifests_validate() -> None:
    manifests = ROOT / "deploy" / "k8s" / "valuestream.yaml"
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "kubernetes-validate"), "--strict",
                           str(manifests)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    documents = {d["kind"]: d for d in yaml.safe_load_all(manifests.read_text())}
    assert {"ConfigMap", "Secret", "Service", "StatefulSet", "PodDisruptionBudget"} <= set(
        documents)
    assert valuestream_settings(documents["ConfigMap"]["data"]) <= SETTINGS
    container = documents["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]
    assert valuestream_settings({e["name"]: 1 for e in container["env"]}) <= SETTINGS
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (Debian's prometheus package; .ci/run installs it)")
    return found


def test_the_alert_rules_pass_promtool() -> None:
    done = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 6 rules found" in done.stdout


def used_metrics() -> set[str]:
    """Every valuestream metric the dashboard and the alert rules query."""
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    expressions += [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"]
                    for r in g["rules"]]
    return {name for expr in expressions for name in METRIC.findall(expr)}


def exported_metrics(worker: Worker) -> set[str]:
    """The series names a worker exports (labelled metrics without samples included)."""
    status, text = http_get(f"{worker.url}/metrics")
    assert status == 200
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names |= {name, f"{name}_total"} if kind == "counter" else {name}
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


@pytest.mark.kafka
def test_the_dashboard_and_rules_use_metrics_a_worker_exports(
        make_worker: Any, kafka_bootstrap: str, namespace: str, tmp_path: Path) -> None:
    worker = make_worker("w1")
    used = used_metrics()
    assert len(used) >= 10
    assert used - exported_metrics(worker) == set()

    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus is not installed (Debian's prometheus package; .ci/run "
                    "installs it)")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "valuestream",
                            "static_configs": [{"targets": [worker.url.split("//")[1]]}]}]}))
    server = subprocess.Popen(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"))
    sent = itertools.count()
    query = f"http://127.0.0.1:{port}/api/v1/query?query=" + (
        "sum(rate(valuestream_events_total[10s]))")

    def rate() -> float | None:
        """Send one more event, then ask Prometheus for the rate of processed events."""
        n = next(sent)
        produce(kafka_bootstrap, f"{namespace}-", [event(
            "email.sent", f"e{n}", "c1", "2026-03-01T00:00:00Z", message_id=f"m{n}")])
        status, body = http_get(query)
        result = body["data"]["result"] if status == 200 else []
        value = float(result[0]["value"][1]) if result else 0.0
        return value if value > 0 else None

    try:
        assert wait_for(rate, 60, "Prometheus to compute a rate of valuestream_events_total",
                        interval=1.0) > 0
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.kafka
def test_json_logs_version_and_build_info(make_worker: Any) -> None:
    worker = make_worker("w1", VALUESTREAM_LOG_FORMAT="json")
    version = subprocess.run([str(ROOT / ".venv" / "bin" / "valuestream"), "--version"],
                             capture_output=True, text=True, check=True).stdout.split()
    assert version[0] == "valuestream" and re.fullmatch(r"\d+\.\d+\.\d+.*", version[1])
    assert worker.metric("valuestream_build_info", version=version[1]) == 1
    worker.stop()
    lines = [line for line in worker.log_path.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any("ready in" in e["message"] and e["partitions"] for e in entries)
    assert {"time", "level", "logger", "message"} <= set(entries[0])
