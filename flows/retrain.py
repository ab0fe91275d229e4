"""The retraining flow: ingest (and merge newly landed images), then every stale dvc.yaml stage.

The stages, their order and which stage waits for which come from DVC's own graph of dvc.yaml
(`tasks.dag`); each stage is submitted as soon as the stages it depends on are done, so
evaluate@cnn starts while the RNN still trains. This module only says *how* each kind of stage
runs (retries, timeouts, a GPU worker), in `HOW_TO_RUN`.

Every stage runs through `dvc repro --single-item`, so the flow keeps no record of its own:
dvc.lock pins the data, params and code of what was trained and registered, `dvc repro`
afterwards is a no-op, and a second run with nothing changed trains nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import Flow, Task, flow, get_run_logger, runtime, task
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import FlowRun
from prefect.futures import PrefectFuture, as_completed
from prefect.states import State
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows.dispatch import dispatch_training
from tasks.dag import Stage, read_stage_graph, walk
from tasks.handoff import check_code_shippable
from tasks.ingest import ensure_dataset, version_data
from tasks.landing import merge_landing
from tasks.locks import run_lock
from tasks.notify import run_payload, send_webhook
from tasks.paths import DATA_DIR, MODEL_NAMES, VALIDATION_METRICS
from tasks.preflight import format_results, preflight, raise_if_failed
from tasks.registry.lineage import data_version
from tasks.registry.run_report import read_markdown
from tasks.report import RunSummary, read_run_summary, summary_markdown
from tasks.settings import Settings
from tasks.stages import StageRun, has_remote, pipeline_up_to_date, push, run_stage
from tasks.validation.report import validation_markdown

TRAINING_TIMEOUT_SECONDS = Settings.from_environment().training_timeout_seconds
# One thread per model, so the three trainings run at once.
TRAINING_POOL: TaskRunner[Any] = ThreadPoolTaskRunner(max_workers=len(MODEL_NAMES))


@task(name="ingest")
def ingest_task(source: str, path: str | None, name: str | None, repo: str) -> bool:
    return ensure_dataset(source, Path(path) if path else None, name, Path(repo))


@task(name="merge-landing")
def landing_task(landing_dir: str, repo: str) -> int:
    batch = merge_landing(Path(landing_dir), Path(repo) / DATA_DIR)
    if batch.files:
        version_data(Path(repo) / DATA_DIR, Path(repo))
    return batch.files


@task(
    name="dispatch-training",
    task_run_name="train@{model} on worker",
    # A retry of a training killed on its worker (preempted, OOM) goes to whichever worker is
    # free, and resumes from the checkpoint copy in the shared store.
    retries=2,
    retry_delay_seconds=[10, 60],
    retry_jitter_factor=0.5,
)
def dispatch_task(model: str, version: str, repo: str) -> StageRun:
    return dispatch_training(
        model, version, repo, TRAINING_TIMEOUT_SECONDS, log=get_run_logger().info
    )


@task(name="dvc-push")
def push_task(repo: str) -> bool:
    """With a DVC remote, publish every output and the run-cache, so another clone of this
    commit (`git pull && dvc pull`) reproduces nothing."""
    if not has_remote(Path(repo)):
        return False
    push(Path(repo), run_cache=True, log=get_run_logger().info)
    return True


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


@task(name="preflight-check")
def preflight_task(repo: str, training_mode: str = "in-process") -> None:
    """Every configured shared service answers and accepts our credentials, and in worker mode
    with a DVC remote the code workers will clone is committed and pushed; else stop before
    any stage with one line per problem (nothing registered, data/ and dvc.lock as they were)."""
    results = preflight(Settings.from_environment(Path(repo)), Path(repo))
    get_run_logger().info("preflight:\n%s", format_results(results))
    raise_if_failed(results)
    if training_mode == "worker" and has_remote(Path(repo)):
        check_code_shippable(Path(repo))


@task(name="dvc-status")
def up_to_date_task(repo: str) -> bool:
    return pipeline_up_to_date(Path(repo))


@task(name="dvc-stage", task_run_name="{stage}")
def stage_task(stage: str, repo: str) -> StageRun:
    return run_stage(stage, Path(repo), log=get_run_logger().info)


@dataclass(frozen=True)
class HowToRun:
    """How the flow runs one kind of dvc.yaml stage (its name before `@`); what runs and in
    which order is dvc.yaml's business."""

    options: dict[str, Any] = field(default_factory=dict)  # Prefect task options
    on_worker: bool = False  # worker mode: a `train-model` flow run on the gpu pool instead
    # A Prefect task given the repo, run once the stage is done, whether it passed or failed.
    publish: Callable[[str], object] | None = None


HOW_TO_RUN: dict[str, HowToRun] = {
    # Training can hit transient failures (a killed worker, memory pressure): retry it, and
    # since each epoch is checkpointed, a retry resumes rather than starts over. Back off:
    # transient failures (OOM, preemption) need time.
    "train": HowToRun(
        options={
            "name": "train",
            "retries": 2,
            "retry_delay_seconds": [10, 60],
            "retry_jitter_factor": 0.5,
            "timeout_seconds": TRAINING_TIMEOUT_SECONDS,
        },
        on_worker=True,
    ),
    "validate": HowToRun(publish=validation_report_task),
}
DEFAULT_HOW = HowToRun()
STAGE_TASKS: dict[str, Task[..., StageRun]] = {
    kind: stage_task.with_options(**how.options) for kind, how in HOW_TO_RUN.items() if how.options
}


def submit_stage(stage: Stage, repo: str, training_mode: str) -> PrefectFuture[StageRun]:
    """Start one stage the way HOW_TO_RUN says its kind runs."""
    how = HOW_TO_RUN.get(stage.kind, DEFAULT_HOW)
    if how.on_worker and training_mode == "worker":
        return dispatch_task.submit(str(stage.item), data_version(Path(repo)), repo)
    return STAGE_TASKS.get(stage.kind, stage_task).submit(stage.name, repo)


def publish_after(stage: Stage, repo: str) -> None:
    """Run the stage kind's publish task, if any (before its result is read, so a failed
    stage's report is published too)."""
    publish = HOW_TO_RUN.get(stage.kind, DEFAULT_HOW).publish
    if publish is not None:
        publish(repo)


def first_done(futures: list[PrefectFuture[StageRun]]) -> PrefectFuture[StageRun]:
    """Block until one of `futures` is done; return it."""
    return next(as_completed(futures))


def run_pipeline(repo: str, training_mode: str) -> list[StageRun]:
    """Every dvc.yaml stage, each submitted once its upstream stages succeeded; the first
    failure is raised (validation failing stops the run before training)."""
    results = walk(
        read_stage_graph(Path(repo)),
        submit=lambda stage: submit_stage(stage, repo, training_mode),
        first_done=first_done,
        finished=lambda stage, _: publish_after(stage, repo),
    )
    return list(results.values())


def _notify(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
    """Flow hook: POST the run's outcome to the configured webhook, if any."""
    url = flow_run.parameters.get("webhook_url") or Settings.from_environment().webhook_url
    if url:
        send_webhook(
            url, run_payload(flow.name, flow_run.name, state.name or "", state.message or "")
        )


@flow(
    name="retrain",
    task_runner=TRAINING_POOL,
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
    # One run per checkout: a second one (a schedule meeting a manual run) fails here at once
    # with one line naming the running one, before it touches data/ or dvc.lock.
    with run_lock(Path(repo), runtime.flow_run.name):
        # Before ingest too: with a DVC remote, ingest pushes to it.
        preflight_task(repo, training_mode)
        ingested = ingest_task(source, path, name, repo)
        if landing_dir:
            ingested = landing_task(landing_dir, repo) > 0 or ingested
        if up_to_date_task(repo):
            # DVC says nothing changed since the last run: no stage would run, so skip asking each.
            summary = read_run_summary(Path(repo), [], ingested)
            create_markdown_artifact(summary_markdown(summary), key="retrain-summary")
            return summary
        stage_runs = run_pipeline(repo, training_mode)
        push_task(repo)
        summary = read_run_summary(Path(repo), stage_runs, ingested)
        create_markdown_artifact(summary_markdown(summary), key="retrain-summary")
        # The register stage's run report (validation, metrics vs champion, gate decisions).
        report = read_markdown(Path(repo))
        if report is not None:
            create_markdown_artifact(report, key="run-report", description="imgflow run report")
        return summary
