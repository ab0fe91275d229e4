"""Register: record every trained model in MLflow, add it to the registry and run the gate.

One parent run per pipeline call holds the data-validation summary and the run report; one
nested run per model holds its params, per-epoch history, evaluation metrics, plots and the logged
model, which becomes a new version of `<dataset>-<model>` with the alias `challenger`, tagged with
its lineage (commit, data md5, params hash, artifact md5, validation summary, class weights).
The promotion gate (tasks/promote.py) then decides whether it becomes `champion`, re-scoring the
current champion on this run's test split. A model whose artifact md5 equals the latest version's
`model_md5` tag is not logged again: DVC re-runs this stage whenever any one model changes.

TensorFlow, Keras and MLflow are imported inside functions so importing this module stays cheap.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.lineage import (
    UNKNOWN_COMMIT,
    LineageError,
    data_version,
    dir_md5,
    git_commit,
    params_hash,
)
from tasks.params import ParamsError, load_params, section
from tasks.paths import (
    CLASSIFIERS,
    DATA_DVC_FILE,
    MODEL_NAMES,
    PARAMS_FILE,
    PLOTS_DIR,
    PREPARED_META_FILE,
    REGISTRY_REPORT,
    SPLITS_FILE,
    VALIDATION_METRICS,
    history_plot_file,
    model_dir,
    model_metrics_file,
)
from tasks.promote import CHALLENGER, GateDecision, PromotionError, check_thresholds, gate

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
PIPELINE_TAG = "imgflow.pipeline_run"
HEADLINE_METRICS: dict[str, str] = {
    "cnn": "test_accuracy",
    "rnn": "test_accuracy",
    "gan": "recognisable_share",
}
_METRIC_BATCH = 1000  # MLflow's per-request limit for log_batch


class RegisterError(ValueError):
    """An input of the register step is missing or invalid; the message names file and stage."""


@dataclass
class RegisteredModel:
    """One model's registry entry as this call left it (new version, or the reused one).

    decision/reason/champion_* come from the gate (for a reused version: its recorded tags);
    champion_metrics are the champion's scores re-computed on this run's test split. For the GAN,
    `judge` names the CNN that scored both generators at the gate, and `metrics` are that
    judge's scores (see GanJudge).
    """

    model: str
    registered_name: str
    version: str
    run_id: str
    headline_metric: str
    headline_value: float
    reused: bool
    decision: str = ""
    reason: str = ""
    champion_version: str | None = None
    champion_score: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)
    judge: str = ""


@dataclass(frozen=True)
class _ModelInputs:
    model: str
    directory: Path
    keras_file: Path
    record: dict[str, Any]
    metrics: dict[str, Any]
    model_md5: str


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, or a sqlite store in the working directory (artifacts in ./mlruns)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def headline_metric(model: str) -> str:
    """The one metric a model is judged by: test accuracy, or the GAN's recognisable share."""
    return HEADLINE_METRICS[model]


def _configure_mlflow() -> None:
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


def _require_file(path: Path, stage: str) -> Path:
    if not path.is_file():
        raise RegisterError(f"{path} not found: run `dvc repro {stage}` first")
    return path


def _read_json(path: Path, stage: str) -> Any:
    try:
        return json.loads(_require_file(path, stage).read_text())
    except json.JSONDecodeError as error:
        raise RegisterError(f"{path}: not valid JSON ({error}); run `dvc repro {stage}`") from error


def _model_inputs(root: Path, model: str) -> _ModelInputs:
    """Read and check one model's inputs before anything is logged."""
    if model not in MODEL_NAMES:
        raise RegisterError(f"unknown model {model!r}; expected one of {MODEL_NAMES}")
    directory = model_dir(model, root)
    train_stage = f"train@{model}"
    keras_name = "model.keras" if model in CLASSIFIERS else "generator.keras"
    keras_file = _require_file(directory / keras_name, train_stage)
    if model not in CLASSIFIERS:
        _require_file(directory / "discriminator.keras", train_stage)
    record = _read_json(directory / "train.json", train_stage)
    metrics = _read_json(model_metrics_file(model, root), f"evaluate@{model}")
    headline = headline_metric(model)
    if not isinstance(metrics, dict) or not isinstance(metrics.get(headline), int | float):
        raise RegisterError(
            f"{model_metrics_file(model, root)}: no numeric '{headline}'; "
            f"run `dvc repro evaluate@{model}`"
        )
    if not isinstance(record, dict):
        raise RegisterError(f"{directory / 'train.json'}: expected a JSON object")
    return _ModelInputs(model, directory, keras_file, record, metrics, dir_md5(directory))


@dataclass(frozen=True)
class GateSettings:
    """register.thresholds.<model> and register.tolerance, checked before MLflow is touched."""

    thresholds: dict[str, dict[str, dict[str, float]]]
    tolerance: float


def gate_settings(params: dict[str, Any], models: Sequence[str]) -> GateSettings:
    """Read and check the gate's params; raises RegisterError naming the key."""
    tolerance = section(params, "register.tolerance")
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or tolerance < 0:
        raise RegisterError(
            f"params.yaml: register.tolerance must be a number >= 0, got {tolerance!r}"
        )
    thresholds = section(params, "register.thresholds")
    if not isinstance(thresholds, dict):
        raise RegisterError("params.yaml: register.thresholds must map model -> metric thresholds")
    checked = {}
    for model in models:
        if model not in thresholds:
            raise RegisterError(
                f"params.yaml: missing key 'register.thresholds.{model}' (the gate needs "
                "absolute thresholds for every model, e.g. {test_accuracy: {min: 0.9}})"
            )
        try:
            checked[model] = check_thresholds(thresholds[model], model)
        except PromotionError as error:
            raise RegisterError(str(error)) from error
    return GateSettings(checked, float(tolerance))


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The top-level numbers of a metrics dict (per-class tables left out)."""
    return {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def validation_summary(validation: dict[str, Any]) -> str:
    """ "passed", or "passed with N warnings: ..." (tag values stay short)."""
    warnings = validation.get("warnings") or []
    if not warnings:
        return "passed"
    texts = [
        str(item.get("message") or item.get("name") or item)
        if isinstance(item, dict)
        else str(item)
        for item in warnings
    ]
    summary = f"passed with {len(texts)} warning(s): " + "; ".join(texts)
    return summary if len(summary) <= 500 else summary[:497] + "..."


def load_keras_version(model_uri: str):
    """A registered Keras model as a native Keras model, loaded in safe mode (no code runs)."""
    import mlflow

    return mlflow.tensorflow.load_model(model_uri, keras_model_kwargs={"safe_mode": True})


@dataclass(frozen=True)
class GanJudge:
    """The CNN that scores both GANs at the gate, and how to name it in tags and the report.

    Both generators must be judged by the same classifier, and by one that earned trust: the
    current `champion` of `<dataset>-cnn` (after this run's CNN went through its own gate), or
    this run's CNN when there is no champion yet or the champion is this run's CNN. Judging by
    an unvetted new CNN would let a weak classifier collapse both GANs' scores.
    """

    network: Any
    label: str
    is_run_cnn: bool


def gan_judge(client: MlflowClient, root: Path, dataset: str) -> GanJudge:
    """Resolve the gate's judge for `<dataset>-gan` (see GanJudge)."""
    import keras
    from mlflow.exceptions import MlflowException

    from tasks.promote import CHAMPION

    name = f"{dataset}-cnn"
    run_cnn = model_dir("cnn", root)
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        champion = None
    if champion is not None and champion.tags.get("model_md5") != dir_md5(run_cnn):
        network = load_keras_version(f"models:/{name}/{champion.version}")
        return GanJudge(network, f"{name} v{champion.version} (champion)", is_run_cnn=False)
    network = keras.models.load_model(
        _require_file(run_cnn / "model.keras", "train@cnn"), safe_mode=True
    )
    label = (
        f"{name} v{champion.version} (champion, this run's CNN)"
        if champion is not None
        else "this run's CNN (no champion CNN yet)"
    )
    return GanJudge(network, label, is_run_cnn=True)


def _champion_scorer(
    root: Path,
    model: str,
    name: str,
    meta: dict[str, Any],
    params: dict[str, Any],
    judge: GanJudge | None = None,
):
    """score(version) -> metrics of that registered version on this run's test split.

    A GAN is scored by `judge`, the same CNN that scores its challenger at the gate.
    Results are cached so the report can show every re-scored metric.
    """
    if model not in CLASSIFIERS and judge is None:
        raise ValueError("a GAN's champion needs the gate's judge CNN")
    cache: dict[str, dict[str, Any]] = {}

    def score(version: str) -> dict[str, Any]:
        if version not in cache:
            network = load_keras_version(f"models:/{name}/{version}")
            cache[version] = _score(root, model, network, meta, params, judge)
        return cache[version]

    score.cache = cache  # type: ignore[attr-defined]
    return score


def _score(
    root: Path,
    model: str,
    network: Any,
    meta: dict[str, Any],
    params: dict[str, Any],
    judge: GanJudge | None,
) -> dict[str, Any]:
    """Metrics of one network (classifier or generator) on this run's test split."""
    from tasks.evaluate import score_classifier, score_generator
    from tasks.prepare import load_splits

    splits = load_splits(root / SPLITS_FILE)
    class_names = [str(name) for name in meta["class_names"]]
    if model in CLASSIFIERS:
        return score_classifier(network, splits.x["test"], splits.y["test"], class_names)
    return score_generator(
        network,
        judge.network,
        splits.x["train"],
        splits.x["test"],
        class_names,
        section(params, "evaluate"),
        int(section(params, "seed")),
    )


def _latest_version(client: MlflowClient, name: str) -> ModelVersion | None:
    if "'" in name:
        raise RegisterError(f"registered model name {name!r} must not contain a quote")
    found = client.search_model_versions(
        f"name = '{name}'", max_results=1, order_by=["version_number DESC"]
    )
    return found[0] if found else None


def _flat_params(prefix: str, value: Any) -> dict[str, str]:
    """Nested mapping -> {"a.b": "value"}; lists stay whole as compact JSON."""
    if isinstance(value, dict):
        flat: dict[str, str] = {}
        for key, inner in value.items():
            flat.update(_flat_params(f"{prefix}.{key}" if prefix else str(key), inner))
        return flat
    if isinstance(value, str):
        return {prefix: value}
    return {prefix: json.dumps(value, separators=(",", ":"))}


def _numeric_leaves(prefix: str, value: Any) -> dict[str, float]:
    """Numbers and booleans anywhere in a JSON value, keyed by path; list items by `name`."""
    if isinstance(value, bool):
        return {prefix: float(value)}
    if isinstance(value, int | float):
        return {prefix: float(value)}
    leaves: dict[str, float] = {}
    if isinstance(value, dict):
        items: Iterable[tuple[str, Any]] = value.items()
    elif isinstance(value, list):
        items = (
            (str(item.get("name", index)) if isinstance(item, dict) else str(index), item)
            for index, item in enumerate(value)
        )
    else:
        return leaves
    for key, inner in items:
        leaves.update(_numeric_leaves(f"{prefix}.{key}", inner))
    return leaves


def _metric_name(name: str) -> str:
    """MLflow metric names allow alphanumerics, `_ - . / space`; replace anything else."""
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in name)


def _log_history(client: MlflowClient, run_id: str, history: dict[str, Any]) -> None:
    """Per-epoch training curves, step = epoch index (0-based, as Keras counts), in batches."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [
        Metric(_metric_name(key), float(value), now, epoch)
        for key, values in history.items()
        if isinstance(values, list)
        for epoch, value in enumerate(values)
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]
    for start in range(0, len(metrics), _METRIC_BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + _METRIC_BATCH])


def _attachments(root: Path, model: str) -> list[tuple[Path, str]]:
    """(file, artifact folder) pairs for the plots a model's stages wrote, when present: the
    evaluation figures, the training curves, and the GAN's sample grid every N epochs."""
    files = [
        (png, "plots/images") for png in sorted((root / PLOTS_DIR / "images" / model).glob("*.png"))
    ]
    files += [
        (png, "plots/training_samples")
        for png in sorted((model_dir(model, root) / "samples").glob("*.png"))
    ]
    for path, folder in (
        (history_plot_file(model, root), "plots/history"),
        (root / PLOTS_DIR / "confusion" / f"{model}.csv", "plots/confusion"),
    ):
        if path.is_file():
            files.append((path, folder))
    return files


def _log_keras_model(inputs: _ModelInputs, meta: dict[str, Any]) -> str:
    """Log the Keras model (the generator for the GAN) with a signature; return its model uri."""
    import keras
    import mlflow
    import numpy as np
    import tensorflow as tf
    from mlflow.models import infer_signature

    model = keras.models.load_model(inputs.keras_file, safe_mode=True)
    rng = np.random.default_rng(0)
    if inputs.model in CLASSIFIERS:
        # Raw pixel values: the classifiers rescale inside the model.
        example: Any = rng.integers(0, 256, size=(2, *meta["image_shape"])).astype(np.float32)
    else:
        num_classes = len(meta.get("class_names") or [0])
        example = {
            tensor.name: (
                rng.integers(0, num_classes, size=(2, *tensor.shape[1:])).astype(tensor.dtype)
                if "int" in str(tensor.dtype)
                else rng.standard_normal((2, *tensor.shape[1:])).astype(tensor.dtype)
            )
            for tensor in model.inputs
        }
    # A direct call, not predict(): no tf.function is traced for one tiny batch.
    output = keras.ops.convert_to_numpy(model(example, training=False))
    signature = infer_signature(example, output)
    # input_example is deliberately omitted (MLflow 3.17 bug), and explicit requirements
    # skip MLflow's ~9 s dependency inference.
    info = mlflow.tensorflow.log_model(
        model,
        name="model",
        signature=signature,
        pip_requirements=[
            f"tensorflow=={tf.__version__}",
            f"keras=={keras.__version__}",
            f"numpy=={np.__version__}",
        ],
    )
    return info.model_uri


def _describe(commit: str, data_md5: str, model: str) -> str:
    """Version description: the commands that restore this version's data and model files."""
    data = f"dvc checkout {DATA_DVC_FILE} (data md5 {data_md5})"
    files = f"Model files: dvc checkout {model_dir(model, Path('.')).as_posix()}."
    if commit == UNKNOWN_COMMIT:
        return f"Data: {data}; code commit unknown (not a git checkout). {files}"
    sha = commit.removesuffix("-dirty")
    dirty = " Built from uncommitted changes on top of that commit." if sha != commit else ""
    return f"Data: git checkout {sha} && {data}. {files}{dirty}"


def _register_one(
    client: MlflowClient,
    inputs: _ModelInputs,
    *,
    registered_name: str,
    params: dict[str, Any],
    meta: dict[str, Any],
    lineage: dict[str, str],
    root: Path,
) -> RegisteredModel:
    """Log one model as a nested run of the active parent run and register it."""
    import mlflow

    model = inputs.model
    record = inputs.record
    trained_params = record.get("params") or section(params, f"train.{model}")
    with mlflow.start_run(
        nested=True, run_name=model, tags={PIPELINE_TAG: lineage["pipeline_run"], "model": model}
    ) as run:
        run_id = run.info.run_id
        class_weights = record.get("class_weights")
        # Settings every model's training shares (e.g. train.deterministic).
        shared_train = {
            key: value
            for key, value in params.get("train", {}).items()
            if not isinstance(value, dict)
        }
        logged_params = {
            **_flat_params("", trained_params),
            **_flat_params("prepare", params.get("prepare", {})),
            **_flat_params("train", shared_train),
            "seed": str(params.get("seed")),
            "class_weights_used": "true" if class_weights else "false",
        }
        mlflow.log_params(logged_params)
        _log_history(client, run_id, record.get("history") or {})
        figures = {
            key: float(record[key])
            for key in ("epochs_run", "best_epoch", "train_seconds", "images_per_second")
            if isinstance(record.get(key), int | float)
        }
        evaluation = {
            _metric_name(key): float(value)
            for key, value in inputs.metrics.items()
            if isinstance(value, int | float)
        }
        mlflow.log_metrics({**figures, **evaluation})
        mlflow.log_dict(class_weights or {}, "class_weights.json")
        mlflow.log_artifact(str(inputs.directory / "train.json"), "record")
        mlflow.log_artifact(str(model_metrics_file(model, root)), "record")
        if model not in CLASSIFIERS:
            mlflow.log_artifact(str(inputs.directory / "discriminator.keras"), "discriminator")
        for path, folder in _attachments(root, model):
            mlflow.log_artifact(str(path), folder)
        model_uri = _log_keras_model(inputs, meta)

    version = mlflow.register_model(
        model_uri,
        registered_name,
        tags={
            "data_version": lineage["data_version"],
            "git_commit": lineage["git_commit"],
            "params_hash": params_hash(trained_params),
            "params": json.dumps(trained_params, sort_keys=True, separators=(",", ":")),
            "model_md5": inputs.model_md5,
            "validation": lineage["validation"],
            "class_weights": (
                json.dumps(class_weights, sort_keys=True, separators=(",", ":"))
                if class_weights
                else "none"
            ),
            "pipeline_run": lineage["pipeline_run"],
        },
    )
    client.update_model_version(
        registered_name,
        version.version,
        description=_describe(lineage["git_commit"], lineage["data_version"], model),
    )
    # Every new version is the challenger; only the gate may move `champion`.
    client.set_registered_model_alias(registered_name, CHALLENGER, str(version.version))
    headline = headline_metric(model)
    return RegisteredModel(
        model,
        registered_name,
        str(version.version),
        run_id,
        headline,
        float(inputs.metrics[headline]),
        reused=False,
        metrics=scalar_metrics(inputs.metrics),
    )


def _optional_float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "none") else None
    except ValueError:
        return None


def _reused(client: MlflowClient, inputs: _ModelInputs, version: ModelVersion) -> RegisteredModel:
    """The unchanged version, with the gate decision recorded when it was registered."""
    headline = headline_metric(inputs.model)
    value = float(inputs.metrics[headline])
    if version.run_id:
        value = client.get_run(version.run_id).data.metrics.get(headline, value)
    tags = version.tags
    champion = tags.get("gate.champion_version")
    return RegisteredModel(
        inputs.model,
        version.name,
        str(version.version),
        version.run_id or "",
        headline,
        float(value),
        reused=True,
        decision=tags.get("gate.decision", ""),
        reason=tags.get("gate.reason", ""),
        champion_version=None if champion in (None, "none") else champion,
        champion_score=_optional_float(tags.get("gate.champion_score")),
        metrics=scalar_metrics(inputs.metrics),
        judge=tags.get("gate.judge", ""),
    )


def _run_gate(
    client: MlflowClient,
    entry: RegisteredModel,
    inputs: _ModelInputs,
    settings: GateSettings,
    score_champion,
    challenger_metrics: dict[str, Any] | None = None,
) -> RegisteredModel:
    """Run the promotion gate on a new version and copy its decision into the entry.

    `challenger_metrics` replaces the evaluate step's metrics when the gate scored the
    challenger itself (a GAN judged by the champion CNN).
    """
    metrics = inputs.metrics if challenger_metrics is None else challenger_metrics
    decision: GateDecision = gate(
        client,
        entry.registered_name,
        entry.version,
        metrics,
        metric=entry.headline_metric,
        thresholds=settings.thresholds[inputs.model],
        tolerance=settings.tolerance,
        score_champion=score_champion,
    )
    champion_metrics = score_champion.cache.get(decision.champion_version or "", {})
    entry.decision = decision.decision
    entry.reason = decision.reason
    entry.champion_version = decision.champion_version
    entry.champion_score = decision.champion_score
    entry.champion_metrics = scalar_metrics(champion_metrics)
    entry.metrics = scalar_metrics(metrics)
    entry.headline_value = float(metrics[entry.headline_metric])
    return entry


def _judged_gan(
    client: MlflowClient,
    root: Path,
    entry: RegisteredModel,
    inputs: _ModelInputs,
    meta: dict[str, Any],
    params: dict[str, Any],
) -> tuple[GanJudge, dict[str, Any]]:
    """The gate's judge for a new GAN version and the challenger's metrics under it.

    When the judge is not this run's CNN the challenger is re-scored (metrics logged to its run
    as gate_*); the judge is recorded as the version tag `gate.judge` either way.
    """
    import keras
    from mlflow.entities import Metric

    judge = gan_judge(client, root, str(meta["name"]))
    client.set_model_version_tag(entry.registered_name, entry.version, "gate.judge", judge.label)
    entry.judge = judge.label
    if judge.is_run_cnn:
        return judge, inputs.metrics
    generator = keras.models.load_model(inputs.keras_file, safe_mode=True)
    metrics = _score(root, inputs.model, generator, meta, params, judge)
    now = int(time.time() * 1000)
    client.log_batch(
        entry.run_id,
        metrics=[
            Metric(_metric_name(f"gate_{key}"), value, now, 0)
            for key, value in scalar_metrics(metrics).items()
        ],
    )
    return judge, metrics


def register_models(
    root: Path,
    params: dict[str, Any],
    models: Sequence[str] = MODEL_NAMES,
    pipeline_run_name: str | None = None,
) -> list[RegisteredModel]:
    """Log and register each model whose artifact changed; reuse the registered version otherwise.

    Each new version becomes `challenger` and goes through the promotion gate. All inputs
    (files and gate params) are read and checked before MLflow is touched, so a bad input logs
    nothing and moves no alias. The parent run is only created when at least one model is new;
    the run report is written to reports/ and logged to it.
    """
    root = Path(root)
    experiment = section(params, "register.experiment")
    settings = gate_settings(params, models)
    meta = _read_json(root / PREPARED_META_FILE, "prepare")
    if not isinstance(meta, dict) or not meta.get("name") or "image_shape" not in meta:
        raise RegisterError(f"{root / PREPARED_META_FILE}: needs 'name' and 'image_shape'")
    validation = _read_json(root / VALIDATION_METRICS, "validate")
    if not isinstance(validation, dict) or validation.get("success") is not True:
        raise RegisterError(
            f"{root / VALIDATION_METRICS}: data validation did not pass; nothing is registered"
        )
    try:
        data_md5 = data_version(root)
    except LineageError as error:
        raise RegisterError(str(error)) from error
    all_inputs = [_model_inputs(root, model) for model in models]
    if not (root / SPLITS_FILE).is_file():
        raise RegisterError(f"{root / SPLITS_FILE} not found: run `dvc repro prepare` first")

    import mlflow
    from mlflow import MlflowClient

    _configure_mlflow()
    client = MlflowClient()
    dataset = str(meta["name"])
    results: dict[str, RegisteredModel] = {}
    # (inputs, None) is a new version; (inputs, entry) a registered version the gate never
    # decided on (a crash between registration and gate): it is gated now, not registered again.
    pending: list[tuple[_ModelInputs, RegisteredModel | None]] = []
    for inputs in all_inputs:
        latest = _latest_version(client, f"{dataset}-{inputs.model}")
        if latest is not None and latest.tags.get("model_md5") == inputs.model_md5:
            if "gate.decision" in latest.tags:
                results[inputs.model] = _reused(client, inputs, latest)
            else:
                pending.append((inputs, _reused(client, inputs, latest)))
        else:
            pending.append((inputs, None))

    parent_run_id = None
    if pending:
        pipeline_run = uuid.uuid4().hex
        lineage = {"data_version": data_md5, "git_commit": git_commit(root)}
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        mlflow.set_experiment(experiment)
        with mlflow.start_run(
            run_name=pipeline_run_name or f"pipeline-{dataset}-{stamp}",
            tags={PIPELINE_TAG: pipeline_run, "dataset": dataset, **lineage},
        ) as parent:
            parent_run_id = parent.info.run_id
            mlflow.log_metrics(
                {_metric_name(k): v for k, v in _numeric_leaves("validation", validation).items()}
            )
            mlflow.log_artifact(str(root / VALIDATION_METRICS), "validation")
            for inputs, entry in pending:
                name = f"{dataset}-{inputs.model}"
                if entry is None:
                    entry = _register_one(
                        client,
                        inputs,
                        registered_name=name,
                        params=params,
                        meta=meta,
                        lineage={
                            **lineage,
                            "pipeline_run": pipeline_run,
                            "validation": validation_summary(validation),
                        },
                        root=root,
                    )
                judge, challenger_metrics = None, None
                if inputs.model not in CLASSIFIERS:
                    judge, challenger_metrics = _judged_gan(
                        client, root, entry, inputs, meta, params
                    )
                scorer = _champion_scorer(root, inputs.model, name, meta, params, judge)
                results[inputs.model] = _run_gate(
                    client, entry, inputs, settings, scorer, challenger_metrics
                )
            entries = [results[inputs.model] for inputs in all_inputs]
            _write_run_report(root, entries, validation, data_md5, lineage["git_commit"])
            from tasks.run_report import log_to_mlflow

            log_to_mlflow(root)
    entries = [results[inputs.model] for inputs in all_inputs]
    if parent_run_id is None:
        _write_run_report(root, entries, validation, data_md5, git_commit(root))
    return entries


def _write_run_report(
    root: Path,
    entries: Sequence[RegisteredModel],
    validation: dict[str, Any],
    data_md5: str,
    commit: str,
) -> None:
    import mlflow

    from tasks.run_report import build_report, write_report

    active = mlflow.active_run()
    write_report(
        root,
        build_report(
            root,
            [asdict(entry) for entry in entries],
            validation,
            data_version=data_md5,
            git_commit=commit,
            mlflow_run_id=active.info.run_id if active else None,
            tracking_uri=tracking_uri(),
        ),
    )


def write_registry_report(models: Sequence[RegisteredModel], path: Path = REGISTRY_REPORT) -> None:
    """Write the entries as a JSON list, atomically (a DVC output must never be half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps([asdict(entry) for entry in models], indent=2) + "\n"
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", delete=False
    ) as handle:
        handle.write(text)
    os.replace(handle.name, path)


def format_table(models: Sequence[RegisteredModel]) -> str:
    """Aligned text table of the registry entries, one row per model."""
    header = (
        "model",
        "metric",
        "value",
        "mlflow run",
        "registered name",
        "version",
        "status",
        "champion",
        "gate",
    )
    rows = [header] + [
        (
            entry.model,
            entry.headline_metric,
            f"{entry.headline_value:.4f}",
            entry.run_id,
            entry.registered_name,
            entry.version,
            "unchanged" if entry.reused else "new",
            (
                f"v{entry.champion_version} {entry.champion_score:.4f}"
                if entry.champion_version and entry.champion_score is not None
                else "-"
            ),
            entry.decision or "-",
        )
        for entry in models
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI for the DVC `register` stage: register, write reports/registry.json, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root")
    parser.add_argument(
        "--params", type=Path, default=None, help=f"params file (default: <root>/{PARAMS_FILE})"
    )
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params or args.root / PARAMS_FILE)
        models = register_models(args.root, params)
    except (RegisterError, ParamsError, PromotionError) as error:
        print(f"register: {error}", file=sys.stderr)
        return 1
    write_registry_report(models, args.root / REGISTRY_REPORT)
    print(format_table(models))
    for entry in models:
        if entry.reason:
            print(f"{entry.registered_name} v{entry.version}: {entry.decision}: {entry.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
