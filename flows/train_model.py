"""`train-model`: one model's training as its own flow, so it can run on a GPU worker.

The parent `retrain` flow passes the data version, never data: the worker checks its checkout
holds that version (`dvc checkout`/`dvc pull` on a fresh worker), runs the `train@<model>` stage
and pushes the outputs to the DVC remote when one is configured. The parent then continues from
the DVC cache, as if it had trained the model itself.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from tasks.paths import MODEL_NAMES
from tasks.registry.lineage import data_version
from tasks.stages import push_outputs, run_stage, sync_data_version


@flow(name="train-model", flow_run_name="train-{model}")
def train_model(model: str, expected_data_version: str, repo: str = ".") -> dict[str, object]:
    """Train `model` on exactly `expected_data_version` of the dataset."""
    if model not in MODEL_NAMES:
        raise ValueError(f"unknown model '{model}'; choose one of {', '.join(MODEL_NAMES)}")
    root = Path(repo)
    sync_data_version(root)
    found = data_version(root)
    if found != expected_data_version:
        raise RuntimeError(
            f"worker checkout at {root} holds data version {found}, the run asked for "
            f"{expected_data_version}: update the worker's checkout (git pull && dvc pull)"
        )
    result = run_stage(f"train@{model}", root, log=get_run_logger().info)
    push_outputs(root, f"train@{model}")
    return {"model": model, "trained": result.ran, "seconds": result.seconds}
