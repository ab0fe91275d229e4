"""The real Prefect flow (temporary Prefect server via prefect_test_harness) on a repo copy."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import registered_versions

pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_retrain_flow_registers_three_models_and_a_rerun_trains_nothing(
    repo_copy: Path, prefect_harness: None
) -> None:
    from flows.retrain import retrain

    summary = retrain(repo=str(repo_copy))
    assert {"train@cnn", "train@rnn", "train@gan", "register"} <= set(summary.stages_run)
    assert [m["model"] for m in summary.models] == ["cnn", "rnn", "gan"]
    assert registered_versions(os.environ["MLFLOW_TRACKING_URI"]) == {
        "digits-cnn": ["1"],
        "digits-rnn": ["1"],
        "digits-gan": ["1"],
    }
    # One run report per run, with the gate decision of every model (tiny params: rejected
    # by the absolute thresholds, which is still a recorded decision).
    report = (repo_copy / "reports/run_report.md").read_text()
    assert "## Gate decisions" in report
    assert all(entry["decision"] in ("promoted", "rejected") for entry in summary.models)
    assert (repo_copy / "reports/run_report.html").is_file()
    status = subprocess.run(
        [sys.executable, "-m", "dvc", "status"], capture_output=True, text=True, check=True
    )
    assert "Data and pipelines are up to date" in status.stdout

    again = retrain(repo=str(repo_copy))
    assert again.stages_run == []
    assert all(entry["reused"] or entry["version"] == "1" for entry in again.models)
    assert registered_versions(os.environ["MLFLOW_TRACKING_URI"])["digits-cnn"] == ["1"]


def test_failed_validation_stops_before_training_and_publishes_why(
    repo_copy: Path, prefect_harness: None
) -> None:
    import yaml
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.retrain import retrain

    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["validate"]["min_images_per_class"] = 10_000  # digits has ~140 per class
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(Exception, match="validate"):
        retrain(repo=str(repo_copy))
    assert not (repo_copy / "artifacts/models").exists()  # nothing trained
    assert registered_versions(os.environ["MLFLOW_TRACKING_URI"]) == {}

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["data-validation"]))
        )
    assert artifacts, "the validation table was not published"
    latest = max(artifacts, key=lambda artifact: artifact.created)
    assert "# Data validation FAILED" in latest.data
    assert "| min_images_per_class | error | FAILED |" in latest.data
