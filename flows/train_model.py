"""`train-model`: one model's training as its own flow, so it runs on a GPU worker host.

Two ways a worker gets the run's inputs (docs/deploy.md):
- a team setup (a DVC remote): the deployment's pull step cloned the scheduling run's commit
  into this flow run's working folder; the run sends a `Handoff` (data version, dvc.lock,
  validation report). The worker checks them, pulls exactly that prepared data from the remote,
  trains through `dvc repro` (resuming from the shared checkpoint after a preemption) and pushes
  the outputs with DVC's run-cache, for the scheduler to restore without re-training.
- a worker sharing the scheduler's checkout (no remote): it checks the data version and trains.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from tasks.handoff import Handoff, apply_handoff, configure_worker_checkout
from tasks.paths import MODEL_NAMES
from tasks.registry.lineage import data_version
from tasks.settings import Settings
from tasks.stages import push_stage_results, run_dvc, run_stage, sync_data_version

TIMINGS_ARTIFACT = "train-model-timings"


@flow(name="train-model", flow_run_name="train-{model}")
def train_model(
    model: str,
    expected_data_version: str = "",
    repo: str = ".",
    handoff: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Train `model` on exactly the data version the run asked for."""
    if model not in MODEL_NAMES:
        raise ValueError(f"unknown model '{model}'; choose one of {', '.join(MODEL_NAMES)}")
    root = Path(repo).resolve()
    if handoff is not None:
        return train_handed_off(model, Handoff(**handoff), root)
    sync_data_version(root)
    found = data_version(root)
    if found != expected_data_version:
        raise RuntimeError(
            f"worker checkout at {root} holds data version {found}, the run asked for "
            f"{expected_data_version}: update the worker's checkout (git pull && dvc pull)"
        )
    result = run_stage(f"train@{model}", root, log=get_run_logger().info)
    return {"model": model, "trained": result.ran, "seconds": result.seconds}


def train_handed_off(model: str, handoff: Handoff, checkout: Path) -> dict[str, Any]:
    """In a clone at the run's commit: set it up, pull the prepared data, train (or restore a
    training already pushed) and push the outputs with DVC's run-cache."""
    log = get_run_logger().info
    stage = f"train@{model}"
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    configure_worker_checkout(checkout, Settings.from_environment(checkout))
    apply_handoff(handoff, checkout)
    seconds["set-up"] = time.perf_counter() - started
    started = time.perf_counter()
    run_dvc(["pull", "prepare"], checkout, log, label="dvc pull")  # the handed-off version
    seconds["pull"] = time.perf_counter() - started
    result = run_stage(stage, checkout, log=log, pull=True)
    seconds["stage"] = result.seconds
    started = time.perf_counter()
    push_stage_results(checkout, stage, log=log)
    seconds["push"] = time.perf_counter() - started
    log(
        f"{stage} at {handoff.commit[:12]}: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
    )
    # The scheduler reads this back (flow results stay on the worker) and reviewers see it.
    create_table_artifact(
        [{"step": step, "seconds": round(value, 2)} for step, value in seconds.items()]
        + [{"step": "trained", "seconds": float(result.ran)}],
        key=TIMINGS_ARTIFACT,
        description=f"{stage} on this worker at commit {handoff.commit[:12]}",
    )
    return {
        "model": model,
        "trained": result.ran,
        "stage_seconds": result.seconds,
        "worker_seconds": {key: round(value, 2) for key, value in seconds.items()},
        "commit": handoff.commit,
    }
