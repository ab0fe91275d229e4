"""The retraining flow: ingest, prepare, validate, train x3 (concurrently), evaluate, register.

Every step is a DVC stage run through `dvc repro --single-item`, so the flow keeps no record of
its own: dvc.lock pins the data, params and code of what was trained and registered, `dvc repro`
afterwards is a no-op, and a second run with nothing changed trains nothing.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.ingest import ensure_dataset
from tasks.paths import MODEL_NAMES
from tasks.report import RunSummary, read_run_summary, summary_markdown
from tasks.stages import StageRun, pipeline_up_to_date, run_stage


@task(name="ingest")
def ingest_task(source: str, path: str | None, name: str | None, repo: str) -> bool:
    return ensure_dataset(source, Path(path) if path else None, name, Path(repo))


@task(name="dvc-status")
def up_to_date_task(repo: str) -> bool:
    return pipeline_up_to_date(Path(repo))


@task(name="dvc-stage", task_run_name="{stage}")
def stage_task(stage: str, repo: str) -> StageRun:
    return run_stage(stage, Path(repo), log=get_run_logger().info)


# Training can hit transient failures (a killed worker, memory pressure): retry it, and since
# each epoch is checkpointed, a retry resumes rather than starts over.
train_task = stage_task.with_options(name="train", retries=2, retry_delay_seconds=10)


@flow(name="retrain", task_runner=ThreadPoolTaskRunner(max_workers=len(MODEL_NAMES)))
def retrain(
    source: str = "digits", path: str | None = None, name: str | None = None, repo: str = "."
) -> RunSummary:
    """Bring the dataset in, then run every pipeline stage that is out of date."""
    ingested = ingest_task(source, path, name, repo)
    if up_to_date_task(repo):
        # DVC says nothing changed since the last run: no stage would run, so skip asking each.
        summary = read_run_summary(Path(repo), [], ingested)
        create_markdown_artifact(summary_markdown(summary), key="retrain-summary")
        return summary
    stage_runs = [stage_task("prepare", repo), stage_task("validate", repo)]
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
    return summary
