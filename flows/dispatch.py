"""Worker mode: run one model's training as a `train-model` flow run on the gpu work pool.

With a DVC remote (a team setup, docs/deploy.md) the worker shares no disk with this checkout:
the training is handed off (tasks/handoff.py) to a deployment whose pull step clones this
run's commit, and once the worker has pushed its outputs with DVC's run-cache, this checkout
restores the training with `dvc repro --pull` (its dvc.lock records it, nothing re-trains).
Without a remote the worker shares this checkout and trains in it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

from flows.deploy import TRAIN_MODEL_DEPLOYMENT, commit_deployment
from tasks.handoff import Handoff, build_handoff, check_code_shippable
from tasks.settings import Settings
from tasks.stages import StageError, StageRun, has_remote, push, run_stage

# The three trainings of a run are dispatched at once; their common inputs are pushed once.
_PUSH_LOCK = threading.Lock()
_PUSHED: set[tuple[str, str]] = set()


def dispatch_training(
    model: str,
    data_version: str,
    repo: str,
    timeout: float,
    log: Callable[[str], None] = print,
) -> StageRun:
    """Start `train-model` for `model` on a worker and wait for it; raises unless it completed."""
    root = Path(repo)
    if not has_remote(root):
        shared = {"model": model, "expected_data_version": data_version, "repo": repo}
        result = _run_and_wait(TRAIN_MODEL_DEPLOYMENT, shared, model, timeout)
        return StageRun(f"train@{model}", bool(result.get("trained", True)), result["seconds"])
    started = time.perf_counter()
    handoff = handoff_inputs(root)
    deployment = commit_deployment(handoff.commit, Settings.from_environment(root))
    parameters: dict[str, Any] = {"model": model, "handoff": handoff.as_parameters()}
    result = _run_and_wait(deployment, parameters, model, timeout)
    restore_training(model, root)
    wall = time.perf_counter() - started
    steps = worker_timings(result["flow_run_id"])
    stage = steps.get("stage", 0.0)
    log(
        f"train@{model} on worker: {wall:.1f} s, of which the training stage {stage:.1f} s and "
        f"the hand-off {wall - stage:.1f} s (on the worker: {steps})"
    )
    return StageRun(f"train@{model}", bool(steps.get("trained", 1.0)), round(wall, 2))


def worker_timings(flow_run_id: UUID) -> dict[str, float]:
    """The step timings a `train-model` run recorded as a table artifact ({} if none)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.train_model import TIMINGS_ARTIFACT

    runs = ArtifactFilterFlowRunId(any_=[flow_run_id])
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=runs))
    for artifact in artifacts:
        if artifact.key == TIMINGS_ARTIFACT:
            data: Any = artifact.data
            rows: list[dict[str, Any]] = json.loads(data) if isinstance(data, str) else data
            return {str(row["step"]): float(row["seconds"]) for row in rows}
    return {}


def handoff_inputs(root: Path) -> Handoff:
    """Check the code is committed and pushed, push the prepared data once, build the Handoff."""
    commit = check_code_shippable(root)
    handoff = build_handoff(root, commit)
    with _PUSH_LOCK:
        key = (str(root.resolve()), handoff.dvc_lock)
        if key not in _PUSHED:
            push(root, ["prepare"], log=lambda line: None)
            _PUSHED.add(key)
    return handoff


def restore_training(model: str, root: Path) -> StageRun:
    """Record the worker's training in this checkout's dvc.lock from DVC's run-cache; with
    IMGFLOW_RESTORE_ONLY the stage's command refuses to train if no run-cache entry matches."""
    return run_stage(
        f"train@{model}",
        root,
        log=lambda line: None,
        pull=True,
        environment={"IMGFLOW_RESTORE_ONLY": "1"},
    )


def _run_and_wait(
    deployment: str, parameters: dict[str, Any], model: str, timeout: float
) -> dict[str, Any]:
    """Run the deployment, wait for its end; its result, or StageError unless it completed."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    flow_run = run_deployment(deployment, parameters=parameters, timeout=timeout, poll_interval=2)
    if not isinstance(flow_run, FlowRun):  # called from a sync flow, so never a coroutine
        raise TypeError(f"run_deployment returned {type(flow_run).__name__}, not a FlowRun")
    state = flow_run.state
    if state is None or not state.is_final():
        raise StageError(
            f"train-model run '{flow_run.name}' for {model} did not finish within {timeout:.0f} s "
            "(IMGFLOW_TRAINING_TIMEOUT): is a worker polling the pool? See the Prefect UI"
        )
    if not state.is_completed():
        raise StageError(
            f"train-model run '{flow_run.name}' for {model} ended {state.name}: "
            f"{state.message or 'see its logs in the Prefect UI'}"
        )
    result = state.result() if state.data is not None else {}
    seconds = flow_run.total_run_time.total_seconds() if flow_run.total_run_time else 0.0
    return {**result, "seconds": round(seconds, 2), "flow_run_id": flow_run.id}
