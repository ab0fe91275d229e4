"""Reviewing in the MLflow UI: a real `mlflow server` on 127.0.0.1 serves the pipeline's store.

The store is filled by the register step (runs, metrics, versions, aliases, gate tags); the
server is started on a free port and queried through its REST API, then stopped.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tasks.register import register_models

STARTUP_SECONDS = 120
# Starting a server (a separate Python process importing MLflow's web app) takes tens of seconds
# on 2 shared cores; this belongs with the long tests.
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def call(base: str, path: str, query: dict | None = None, body: dict | None = None) -> dict:
    url = f"{base}/api/2.0/mlflow/{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_mlflow_server_serves_runs_metrics_versions_aliases_and_tags(
    tmp_path: Path, use_store, fake_repo
) -> None:
    uri = use_store(tmp_path)
    root = fake_repo.build(tmp_path / "repo")
    entries = {entry.model: entry for entry in register_models(root, fake_repo.stage_params(root))}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)

        experiment = call(base, "experiments/get-by-name", {"experiment_name": "imgflow-test"})
        experiment_id = experiment["experiment"]["experiment_id"]
        runs = call(base, "runs/search", body={"experiment_ids": [experiment_id]})["runs"]
        assert len(runs) == 4  # the pipeline's parent run + one per model
        cnn = call(base, "runs/get", {"run_id": entries["cnn"].run_id})["run"]
        metrics = {item["key"]: item["value"] for item in cnn["data"]["metrics"]}
        assert metrics["test_accuracy"] == pytest.approx(0.9)
        history = call(
            base, "metrics/get-history", {"run_id": entries["cnn"].run_id, "metric_key": "loss"}
        )["metrics"]
        assert sorted(point["step"] for point in history) == [0, 1, 2]

        for model, entry in entries.items():
            name = entry.registered_name
            registered = call(base, "registered-models/get", {"name": name})["registered_model"]
            aliases = {item["alias"]: item["version"] for item in registered["aliases"]}
            assert aliases == {"challenger": "1", "champion": "1"}, model
            version = call(base, "model-versions/get", {"name": name, "version": "1"})
            tags = {item["key"]: item["value"] for item in version["model_version"]["tags"]}
            assert tags["gate.decision"] == "promoted"
            assert tags["data_version"] and tags["git_commit"] and tags["params_hash"]
            assert tags["validation"] == "passed"
            by_alias = call(base, "registered-models/alias", {"name": name, "alias": "champion"})
            assert by_alias["model_version"]["run_id"] == entry.run_id
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
