"""Worker mode: run one model's training as a `train-model` flow run on the gpu work pool."""

from __future__ import annotations

from flows.deploy import TRAIN_MODEL_DEPLOYMENT
from tasks.stages import StageError, StageRun


def dispatch_training(model: str, data_version: str, repo: str, timeout: float) -> StageRun:
    """Start `train-model` for `model` on a worker and wait for it; raises unless it completed."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    flow_run = run_deployment(
        TRAIN_MODEL_DEPLOYMENT,
        parameters={"model": model, "expected_data_version": data_version, "repo": repo},
        timeout=timeout,
        poll_interval=2,
    )
    if not isinstance(flow_run, FlowRun):  # called from a sync flow, so never a coroutine
        raise TypeError(f"run_deployment returned {type(flow_run).__name__}, not a FlowRun")
    state = flow_run.state
    if state is None or not state.is_completed():
        name = state.name if state else "unknown"
        raise StageError(
            f"train-model run '{flow_run.name}' for {model} ended {name} "
            f"(timeout {timeout:.0f} s): see its logs in the Prefect UI"
        )
    result = state.result() if state.data is not None else {}
    seconds = flow_run.total_run_time.total_seconds() if flow_run.total_run_time else 0.0
    return StageRun(f"train@{model}", bool(result.get("trained", True)), round(seconds, 2))
