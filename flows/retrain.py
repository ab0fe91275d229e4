"""The retraining flow: ingest, prepare, validate, train x3 (concurrently), evaluate, register.

Every step is a DVC stage run through `dvc repro --single-item`, so the flow keeps no record of
its own: dvc.lock pins the data, params and code of what was trained and registered, `dvc repro`
afterwards is a no-op, and a second run with nothing changed trains nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from flows.dispatch import dispatch_training
from tasks.ingest import ensure_dataset, version_data
from tasks.landing import merge_landing
from tasks.lineage import data_version
from tasks.notify import run_payload, send_webhook
from tasks.paths import DATA_DIR, MODEL_NAMES, VALIDATION_METRICS
from tasks.report import RunSummary, read_run_summary, summary_markdown
from tasks.run_report import read_markdown
from tasks.settings import Settings
from tasks.stages import StageRun, pipeline_up_to_date, run_stage
from tasks.validate import validation_markdown

TRAINING_TIMEOUT_SECONDS = Settings.from_environment().training_timeout_seconds


@task(name="ingest")
def ingest_task(source: str, path: str | None, name: str | None, repo: str) -> bool:
    return ensure_dataset(source, Path(path) if path else None, name, Path(repo))


@task(name="merge-landing")
def landing_task(landing_dir: str, repo: str) -> int:
    batch = merge_landing(Path(landing_dir), Path(repo) / DATA_DIR)
    if batch.files:
        version_data(Path(repo) / DATA_DIR, Path(repo))
    return batch.files


@task(name="dispatch-training", task_run_name="train@{model} on worker")
def dispatch_task(model: str, version: str, repo: str) -> StageRun:
    return dispatch_training(model, version, repo, TRAINING_TIMEOUT_SECONDS)


@task(name="validation-report")
def validation_report_task(repo: str) -> bool:
    """Publish the data validation table as a Prefect artifact, passed or failed (a failed
    validation stops the run before the run report exists, so this is where a reviewer sees why)."""
    path = Path(repo) / VALIDATION_METRICS
    if not path.is_file():
        return False
    report = json.loads(path.read_text())
    create_markdown_artifact(
        validation_markdown(report), key="data-validation", description="imgflow data validation"
    )
    return bool(report.get("success"))


@task(name="dvc-status")
def up_to_date_task(repo: str) -> bool:
    return pipeline_up_to_date(Path(repo))


@task(name="dvc-stage", task_run_name="{stage}")
def stage_task(stage: str, repo: str) -> StageRun:
    return run_stage(stage, Path(repo), log=get_run_logger().info)


# Training can hit transient failures (a killed worker, memory pressure): retry it, and since
# each epoch is checkpointed, a retry resumes rather than starts over.
train_task = stage_task.with_options(
    name="train",
    retries=2,
    retry_delay_seconds=[10, 60],  # back off: transient failures (OOM, preemption) need time
    retry_jitter_factor=0.5,
    timeout_seconds=TRAINING_TIMEOUT_SECONDS,
)


def _notify(flow, flow_run, state) -> None:
    """Flow hook: POST the run's outcome to the configured webhook, if any."""
    url = flow_run.parameters.get("webhook_url") or Settings.from_environment().webhook_url
    if url:
        send_webhook(url, run_payload(flow.name, flow_run.name, state.name, state.message or ""))


@flow(
    name="retrain",
    task_runner=ThreadPoolTaskRunner(max_workers=len(MODEL_NAMES)),
    on_completion=[_notify],
    on_failure=[_notify],
    on_crashed=[_notify],
)
def retrain(
    source: str = "digits",
    path: str | None = None,
    name: str | None = None,
    repo: str = ".",
    training_mode: str = "in-process",
    landing_dir: str | None = None,
    webhook_url: str | None = None,
) -> RunSummary:
    """Bring the dataset (and any newly landed images) in, then run every stale stage.

    training_mode "worker" runs each training as a `train-model` flow run on the gpu pool;
    webhook_url (or IMGFLOW_WEBHOOK_URL) receives the outcome through the flow's hooks.
    """
    ingested = ingest_task(source, path, name, repo)
    if landing_dir:
        ingested = landing_task(landing_dir, repo) > 0 or ingested
    if up_to_date_task(repo):
        # DVC says nothing changed since the last run: no stage would run, so skip asking each.
        summary = read_run_summary(Path(repo), [], ingested)
        create_markdown_artifact(summary_markdown(summary), key="retrain-summary")
        return summary
    stage_runs = [stage_task("prepare", repo)]
    validation = stage_task("validate", repo, return_state=True)
    validation_report_task(repo)
    stage_runs.append(validation.result())  # raises when validation stopped the run
    if training_mode == "worker":
        version = data_version(Path(repo))
        trainings = {model: dispatch_task.submit(model, version, repo) for model in MODEL_NAMES}
    else:
        trainings = {model: train_task.submit(f"train@{model}", repo) for model in MODEL_NAMES}
    evaluations = [
        stage_task.submit(
            f"evaluate@{model}",
            repo,
            # The GAN is scored by this run's CNN.
            wait_for=[trainings[model], trainings["cnn"]],
        )
        for model in MODEL_NAMES
    ]
    stage_runs += [future.result() for future in [*trainings.values(), *evaluations]]
    stage_runs.append(stage_task("register", repo))
    summary = read_run_summary(Path(repo), stage_runs, ingested)
    create_markdown_artifact(summary_markdown(summary), key="retrain-summary")
    # The register stage's run report (validation, metrics vs champion, gate decisions).
    report = read_markdown(Path(repo))
    if report is not None:
        create_markdown_artifact(report, key="run-report", description="imgflow run report")
    return summary
