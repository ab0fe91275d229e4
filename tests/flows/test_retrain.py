"""The real Prefect flow (temporary Prefect server via prefect_test_harness) on a repo copy,
and how the flow submits dvc.yaml's stages (fake task futures, no server)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import pytest

from tasks.dag import read_stage_graph
from tasks.stages import StageRun

REPO_ROOT = Path(__file__).resolve().parents[2]


class Submitted:
    """Stand-ins for the flow's Prefect tasks: record each submission, run nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self.published: list[str] = []  # repos the validation report was published for

    def task(self, label: str) -> object:
        calls = self.calls

        class FakeTask:
            def submit(self, *args: object) -> Future[StageRun]:
                calls.append((label, args))
                future: Future[StageRun] = Future()
                future.set_result(StageRun(str(args[0]), True, 0.0))
                return future

        return FakeTask()


@pytest.fixture
def submitted(monkeypatch: pytest.MonkeyPatch) -> Submitted:
    import flows.retrain as retrain_module

    record = Submitted()
    monkeypatch.setattr(retrain_module, "stage_task", record.task("dvc-stage"))
    monkeypatch.setattr(retrain_module, "dispatch_task", record.task("dispatch-training"))
    monkeypatch.setattr(retrain_module, "STAGE_TASKS", {"train": record.task("train")})
    monkeypatch.setattr(retrain_module, "first_done", lambda futures: futures[0])
    monkeypatch.setattr(retrain_module, "data_version", lambda root: "md5-of-data")
    monkeypatch.setitem(
        retrain_module.HOW_TO_RUN,
        "validate",
        retrain_module.HowToRun(publish=record.published.append),
    )
    return record


def test_run_pipeline_submits_every_dvc_yaml_stage_once_in_order(submitted: Submitted) -> None:
    from flows.retrain import run_pipeline

    runs = run_pipeline(str(REPO_ROOT), "in-process")
    names = read_stage_graph(REPO_ROOT).names
    assert [run.stage for run in runs] == names
    assert [args[0] for _, args in submitted.calls] == names
    # Trainings run as the retried, time-limited `train` task; everything else plainly.
    assert {label for label, args in submitted.calls if str(args[0]).startswith("train@")} == {
        "train"
    }
    assert {label for label, args in submitted.calls if not str(args[0]).startswith("train@")} == {
        "dvc-stage"
    }
    assert submitted.published == [str(REPO_ROOT)]


def test_worker_mode_dispatches_only_trainings_with_the_data_version(
    submitted: Submitted,
) -> None:
    from flows.retrain import run_pipeline

    run_pipeline(str(REPO_ROOT), "worker")
    dispatched = [args for label, args in submitted.calls if label == "dispatch-training"]
    assert dispatched == [(model, "md5-of-data", str(REPO_ROOT)) for model in ("cnn", "rnn", "gan")]
    assert not any(label == "train" for label, _ in submitted.calls)


def test_training_task_retries_with_back_off_and_the_configured_timeout() -> None:
    from flows.retrain import STAGE_TASKS, TRAINING_TIMEOUT_SECONDS, stage_task
    from tasks.settings import Settings

    train = STAGE_TASKS["train"]
    assert (train.name, train.retries, train.retry_delay_seconds) == ("train", 2, [10, 60])
    assert train.timeout_seconds == TRAINING_TIMEOUT_SECONDS
    assert Settings.from_environment().training_timeout_seconds == TRAINING_TIMEOUT_SECONDS
    assert (stage_task.name, stage_task.retries, stage_task.timeout_seconds) == (
        "dvc-stage",
        0,
        None,
    )


def flow_run_task_names(flow_run_id: object) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return [task_run.name for task_run in task_runs]


@pytest.mark.pipeline
def test_retrain_flow_registers_three_models_and_a_rerun_trains_nothing(
    repo_copy: Path,
    prefect_harness: None,
    registered_versions: Callable[[str], dict[str, list[str]]],
) -> None:
    from mlflow import MlflowClient

    from flows.retrain import retrain

    state = retrain(repo=str(repo_copy), return_state=True)
    summary = state.result()
    stages = read_stage_graph(repo_copy).names
    assert summary.stages_run == stages  # every dvc.yaml stage ran, in topological order
    assert set(stages) <= set(flow_run_task_names(state.state_details.flow_run_id))
    assert [m["model"] for m in summary.models] == ["cnn", "rnn", "gan"]
    uri = os.environ["MLFLOW_TRACKING_URI"]
    assert registered_versions(uri) == {
        "digits-cnn": ["1"],
        "digits-rnn": ["1"],
        "digits-gan": ["1"],
    }
    # One run report per run; each model's gate decision is the one tagged on its version.
    report = (repo_copy / "reports/run_report.md").read_text()
    assert "## Gate decisions" in report
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for entry in summary.models:
        version = client.get_model_version(entry["registered_name"], entry["version"])
        assert version.tags["gate.decision"] == entry["decision"]
    assert (repo_copy / "reports/run_report.html").is_file()
    status = subprocess.run(
        [sys.executable, "-m", "dvc", "status"], capture_output=True, text=True, check=True
    )
    assert "Data and pipelines are up to date" in status.stdout

    again = retrain(repo=str(repo_copy))
    assert (again.stages_run, again.stages_skipped) == ([], [])  # skipped on `dvc status`
    assert again.models == summary.models  # the same registry report, nothing new
    assert registered_versions(uri) == {
        "digits-cnn": ["1"],
        "digits-rnn": ["1"],
        "digits-gan": ["1"],
    }


@pytest.mark.pipeline
def test_failed_validation_stops_before_training_and_publishes_why(
    repo_copy: Path,
    prefect_harness: None,
    registered_versions: Callable[[str], dict[str, list[str]]],
) -> None:
    import yaml
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.retrain import retrain

    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["validate"]["min_images_per_class"] = 10_000  # digits has ~140 per class
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(Exception, match="DVC stage 'validate' failed"):
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


@pytest.mark.pipeline
def test_failed_preflight_stops_the_run_before_anything_is_touched(
    repo_copy: Path,
    prefect_harness: None,
    tree_digest: Callable[[Path], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.retrain import retrain
    from flows.serve import free_port
    from tasks.preflight import PreflightError

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    data = tree_digest(repo_copy / "data")
    state = retrain(repo=str(repo_copy), return_state=True)
    assert state.is_failed()
    with pytest.raises(PreflightError) as raised:
        state.result()
    assert str(raised.value).splitlines()[1:] == [
        f"- MLflow at {url} is unreachable (ConnectError: [Errno 111] Connection refused): "
        "start it (`make serve-team`) or fix MLFLOW_TRACKING_URI"
    ]
    # Only the check ran: no ingest, no stage, nothing trained, recorded or registered.
    task_runs = flow_run_task_names(state.state_details.flow_run_id)
    assert [name.rsplit("-", 1)[0] for name in task_runs] == ["preflight-check"]
    assert tree_digest(repo_copy / "data") == data
    assert not (repo_copy / "dvc.lock").exists()
    assert not (repo_copy / "artifacts").exists()
    assert not (repo_copy / "mlflow.db").exists()
