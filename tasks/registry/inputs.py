"""The register stage's inputs, read and checked before MLflow is touched.

A missing or malformed file fails with its path and the DVC stage that writes it, so a bad input
logs nothing and moves no alias.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.paths import (
    CLASSIFIERS,
    DISCRIMINATOR_FILE,
    MODEL_NAMES,
    PREPARED_META_FILE,
    SPLITS_FILE,
    TRAINING_RECORD,
    VALIDATION_METRICS,
    model_dir,
    model_file,
    model_metrics_file,
)
from tasks.registry.lineage import LineageError, data_version, dir_md5

HEADLINE_METRICS: dict[str, str] = {
    "cnn": "test_accuracy",
    "rnn": "test_accuracy",
    "gan": "diversity_score",  # not maxed by collapse (tasks/gan_metrics.py)
}


class RegisterError(ValueError):
    """An input of the register step is missing or invalid; the message names file and stage."""


def headline_metric(model: str) -> str:
    """The one metric a model is judged by: test accuracy, or the GAN's diversity score (per
    class the weaker of coverage and recall relative to real images', averaged)."""
    return HEADLINE_METRICS[model]


@dataclass(frozen=True)
class ModelInputs:
    """One trained and evaluated model as the earlier stages left it."""

    model: str
    directory: Path
    keras_file: Path
    record: dict[str, Any]  # train.json
    metrics: dict[str, Any]  # metrics/<model>.json
    model_md5: str  # DVC-style hash of the model folder


@dataclass(frozen=True)
class RunInputs:
    """What every model of one register call shares: dataset meta, validation, data version."""

    meta: dict[str, Any]
    validation: dict[str, Any]
    data_version: str

    @property
    def dataset(self) -> str:
        return str(self.meta["name"])

    @property
    def class_names(self) -> list[str]:
        return [str(name) for name in self.meta["class_names"]]


def require_file(path: Path, stage: str) -> Path:
    """`path`, or RegisterError naming the stage that writes it."""
    if not path.is_file():
        raise RegisterError(f"{path} not found: run `dvc repro {stage}` first")
    return path


def read_json(path: Path, stage: str) -> Any:
    try:
        return json.loads(require_file(path, stage).read_text())
    except json.JSONDecodeError as error:
        raise RegisterError(f"{path}: not valid JSON ({error}); run `dvc repro {stage}`") from error


def read_model_inputs(root: Path, model: str) -> ModelInputs:
    """Read and check one model's inputs."""
    if model not in MODEL_NAMES:
        raise RegisterError(f"unknown model {model!r}; expected one of {MODEL_NAMES}")
    directory = model_dir(model, root)
    train_stage = f"train@{model}"
    keras_file = require_file(model_file(model, root), train_stage)
    if model not in CLASSIFIERS:
        require_file(directory / DISCRIMINATOR_FILE, train_stage)
    record = read_json(directory / TRAINING_RECORD, train_stage)
    metrics_file = model_metrics_file(model, root)
    metrics = read_json(metrics_file, f"evaluate@{model}")
    headline = headline_metric(model)
    if not isinstance(metrics, dict) or not isinstance(metrics.get(headline), int | float):
        raise RegisterError(
            f"{metrics_file}: no numeric '{headline}'; run `dvc repro evaluate@{model}`"
        )
    if not isinstance(record, dict):
        raise RegisterError(f"{directory / TRAINING_RECORD}: expected a JSON object")
    return ModelInputs(model, directory, keras_file, record, metrics, dir_md5(directory))


def read_run_inputs(root: Path) -> RunInputs:
    """Dataset meta, a passed validation and the data version; the test split must exist."""
    meta = read_json(root / PREPARED_META_FILE, "prepare")
    if not isinstance(meta, dict) or not meta.get("name") or "image_shape" not in meta:
        raise RegisterError(f"{root / PREPARED_META_FILE}: needs 'name' and 'image_shape'")
    validation = read_json(root / VALIDATION_METRICS, "validate")
    if not isinstance(validation, dict) or validation.get("success") is not True:
        raise RegisterError(
            f"{root / VALIDATION_METRICS}: data validation did not pass; nothing is registered"
        )
    try:
        data_md5 = data_version(root)
    except LineageError as error:
        raise RegisterError(str(error)) from error
    return RunInputs(meta, validation, data_md5)


def require_splits(root: Path) -> None:
    """The gate re-scores champions on this run's test split."""
    if not (root / SPLITS_FILE).is_file():
        raise RegisterError(f"{root / SPLITS_FILE} not found: run `dvc repro prepare` first")
