"""MLflow run logging: one parent run per pipeline call, one nested run per model.

The parent run holds the data-validation summary and the run report; a nested run holds the
model's params, per-epoch history, evaluation metrics, plots and the logged Keras model with its
signature. TensorFlow, Keras and MLflow are imported inside functions so importing this module
stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.paths import (
    CLASSIFIERS,
    DISCRIMINATOR_FILE,
    SAMPLES_DIR,
    TRAINING_RECORD,
    VALIDATION_METRICS,
    confusion_plot_file,
    history_plot_file,
    images_dir,
    model_dir,
    model_metrics_file,
)
from tasks.registry import tags as tag
from tasks.registry.inputs import ModelInputs, RunInputs
from tasks.registry.stage_params import StageParams
from tasks.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

METRIC_BATCH = 1000  # MLflow's per-request limit for log_batch
RECORD_FIELDS = ("epochs_run", "best_epoch", "train_seconds", "images_per_second")


def tracking_uri() -> str:
    """The MLflow store or server (MLFLOW_TRACKING_URI, default a sqlite file in the cwd)."""
    return Settings.from_environment().tracking_uri


def configure_mlflow() -> MlflowClient:
    """Point MLflow's tracking and registry at `tracking_uri()`; a client for that store."""
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient()


def flat_params(prefix: str, value: Any) -> dict[str, str]:
    """Nested mapping -> {"a.b": "value"}; lists stay whole as compact JSON."""
    if isinstance(value, dict):
        flat: dict[str, str] = {}
        for key, inner in value.items():
            flat.update(flat_params(f"{prefix}.{key}" if prefix else str(key), inner))
        return flat
    if isinstance(value, str):
        return {prefix: value}
    return {prefix: json.dumps(value, separators=(",", ":"))}


def numeric_leaves(prefix: str, value: Any) -> dict[str, float]:
    """Numbers and booleans anywhere in a JSON value, keyed by path; list items by `name`."""
    if isinstance(value, bool | int | float):
        return {prefix: float(value)}
    items: Iterable[tuple[str, Any]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = (
            (str(item.get("name", index)) if isinstance(item, dict) else str(index), item)
            for index, item in enumerate(value)
        )
    else:
        return {}
    leaves: dict[str, float] = {}
    for key, inner in items:
        leaves.update(numeric_leaves(f"{prefix}.{key}", inner))
    return leaves


def metric_name(name: str) -> str:
    """MLflow metric names allow alphanumerics, `_ - . / space`; replace anything else."""
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in name)


def _log_batches(client: MlflowClient, run_id: str, metrics: list[Any]) -> None:
    for start in range(0, len(metrics), METRIC_BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + METRIC_BATCH])


def log_history(client: MlflowClient, run_id: str, history: dict[str, Any]) -> None:
    """Per-epoch training curves, step = epoch index (0-based, as Keras counts)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [
        Metric(metric_name(key), float(value), now, epoch)
        for key, values in history.items()
        if isinstance(values, list)
        for epoch, value in enumerate(values)
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]
    _log_batches(client, run_id, metrics)


def log_gate_metrics(client: MlflowClient, run_id: str, metrics: dict[str, float]) -> None:
    """The challenger's metrics as the gate scored them, logged as gate_<name> at step 0."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    entries = [Metric(metric_name(f"gate_{key}"), value, now, 0) for key, value in metrics.items()]
    _log_batches(client, run_id, entries)


def attachments(root: Path, model: str) -> list[tuple[Path, str]]:
    """(file, artifact folder) pairs for the plots a model's stages wrote, when present: the
    evaluation figures, the GAN's sample grid every N epochs, the training curves and the
    confusion matrix."""
    files = [(png, "plots/images") for png in sorted(images_dir(model, root).glob("*.png"))]
    files += [
        (png, "plots/training_samples")
        for png in sorted((model_dir(model, root) / SAMPLES_DIR).glob("*.png"))
    ]
    for path, folder in (
        (history_plot_file(model, root), "plots/history"),
        (confusion_plot_file(model, root), "plots/confusion"),
    ):
        if path.is_file():
            files.append((path, folder))
    return files


def _signature_example(network: Any, model: str, meta: dict[str, Any]) -> Any:
    """Two random inputs of the right shape and dtype (raw pixels for the classifiers, which
    rescale inside the model; noise and labels for the generator)."""
    import numpy as np

    rng = np.random.default_rng(0)
    if model in CLASSIFIERS:
        return rng.integers(0, 256, size=(2, *meta["image_shape"])).astype(np.float32)
    num_classes = len(meta.get("class_names") or [0])
    return {
        tensor.name: (
            rng.integers(0, num_classes, size=(2, *tensor.shape[1:])).astype(tensor.dtype)
            if "int" in str(tensor.dtype)
            else rng.standard_normal((2, *tensor.shape[1:])).astype(tensor.dtype)
        )
        for tensor in network.inputs
    }


def log_keras_model(inputs: ModelInputs, meta: dict[str, Any]) -> str:
    """Log the Keras model (the generator for the GAN) with a signature; return its model uri."""
    import keras
    import mlflow
    import numpy as np
    import tensorflow as tf
    from mlflow.models import infer_signature

    network = keras.models.load_model(inputs.keras_file, safe_mode=True)
    example = _signature_example(network, inputs.model, meta)
    # A direct call, not predict(): no tf.function is traced for one tiny batch.
    output = keras.ops.convert_to_numpy(network(example, training=False))
    # input_example is deliberately omitted (MLflow 3.17 bug), and explicit requirements
    # skip MLflow's ~9 s dependency inference.
    info = mlflow.tensorflow.log_model(
        network,
        name="model",
        signature=infer_signature(example, output),
        pip_requirements=[
            f"tensorflow=={tf.__version__}",
            f"keras=={keras.__version__}",
            f"numpy=={np.__version__}",
        ],
    )
    return str(info.model_uri)


@contextlib.contextmanager
def parent_run(
    root: Path, experiment: str, run_name: str, run: RunInputs, commit: str, pipeline_run: str
) -> Iterator[str]:
    """The pipeline's parent run (yields its id), with the validation summary logged."""
    import mlflow

    mlflow.set_experiment(experiment)
    run_tags = {
        tag.PIPELINE_RUN: pipeline_run,
        tag.RUN_DATASET: run.dataset,
        tag.DATA_VERSION: run.data_version,
        tag.GIT_COMMIT: commit,
    }
    with mlflow.start_run(run_name=run_name, tags=run_tags) as parent:
        leaves = numeric_leaves("validation", run.validation)
        mlflow.log_metrics({metric_name(key): value for key, value in leaves.items()})
        mlflow.log_artifact(str(root / VALIDATION_METRICS), "validation")
        yield parent.info.run_id


def _model_params(
    inputs: ModelInputs, params: StageParams, trained_params: dict[str, Any]
) -> dict[str, str]:
    """The params logged on a model's run: its own, prepare's, the shared train settings."""
    return {
        **flat_params("", trained_params),
        **flat_params("prepare", params.prepare.model_dump()),
        **flat_params("train", params.shared_train()),
        "seed": str(params.seed),
        "class_weights_used": "true" if inputs.record.get("class_weights") else "false",
    }


def _model_metrics(inputs: ModelInputs) -> dict[str, float]:
    """Training figures from train.json and the evaluation metrics."""
    record = inputs.record
    figures = {
        key: float(record[key]) for key in RECORD_FIELDS if isinstance(record.get(key), int | float)
    }
    evaluation = {
        metric_name(key): float(value)
        for key, value in inputs.metrics.items()
        if isinstance(value, int | float)
    }
    return {**figures, **evaluation}


def log_model_run(
    client: MlflowClient,
    root: Path,
    inputs: ModelInputs,
    params: StageParams,
    meta: dict[str, Any],
    pipeline_run: str,
) -> tuple[str, str]:
    """Log one model as a nested run of the active parent run: (run id, logged model uri)."""
    import mlflow

    model = inputs.model
    trained_params = params.trained_params(model, inputs.record)
    run_tags = {tag.PIPELINE_RUN: pipeline_run, tag.RUN_MODEL: model}
    with mlflow.start_run(nested=True, run_name=model, tags=run_tags) as run:
        run_id = run.info.run_id
        mlflow.log_params(_model_params(inputs, params, trained_params))
        log_history(client, run_id, inputs.record.get("history") or {})
        mlflow.log_metrics(_model_metrics(inputs))
        mlflow.log_dict(inputs.record.get("class_weights") or {}, "class_weights.json")
        mlflow.log_artifact(str(inputs.directory / TRAINING_RECORD), "record")
        mlflow.log_artifact(str(model_metrics_file(model, root)), "record")
        if model not in CLASSIFIERS:
            mlflow.log_artifact(str(inputs.directory / DISCRIMINATOR_FILE), "discriminator")
        for path, folder in attachments(root, model):
            mlflow.log_artifact(str(path), folder)
        model_uri = log_keras_model(inputs, meta)
    return run_id, model_uri


def active_run_id() -> str | None:
    """The id of MLflow's active run in this process, if any."""
    import mlflow

    active = mlflow.active_run()
    return active.info.run_id if active else None


def log_report(paths: Iterable[Path]) -> None:
    """Attach the run report's files to the active run under report/."""
    import mlflow

    for path in paths:
        mlflow.log_artifact(str(path), "report")
