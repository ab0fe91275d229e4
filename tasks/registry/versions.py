"""Registered versions: a new version with its lineage tags, description and `challenger` alias,
or the version already registered for an unchanged model (matched by its `model_md5` tag).

A RegisteredModel is one model's registry entry as a register call left it; it is what
reports/registry.json, the CLI table and the run report show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.paths import DATA_DVC_FILE, model_dir
from tasks.registry import tags as tag
from tasks.registry.inputs import ModelInputs, RegisterError, headline_metric
from tasks.registry.lineage import UNKNOWN_COMMIT, params_hash

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

MAX_TAG_SUMMARY = 500  # characters of the validation summary tag


@dataclass
class RegisteredModel:
    """One model's registry entry as this call left it (new version, or the reused one).

    decision/reason/champion_* come from the gate (for a reused version: its recorded tags);
    champion_metrics are the champion's scores re-computed on this run's test split. For the GAN,
    `judge` names the CNN that scored both generators at the gate, and `metrics` are that
    judge's scores.
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
class Lineage:
    """What produced a version, recorded as its tags."""

    data_version: str
    git_commit: str
    pipeline_run: str
    validation: str  # validation_summary(...)


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
    return summary if len(summary) <= MAX_TAG_SUMMARY else summary[: MAX_TAG_SUMMARY - 3] + "..."


def describe(commit: str, data_md5: str, model: str) -> str:
    """Version description: the commands that restore this version's data and model files."""
    data = f"dvc checkout {DATA_DVC_FILE} (data md5 {data_md5})"
    files = f"Model files: dvc checkout {model_dir(model, Path('.')).as_posix()}."
    if commit == UNKNOWN_COMMIT:
        return f"Data: {data}; code commit unknown (not a git checkout). {files}"
    sha = commit.removesuffix("-dirty")
    dirty = " Built from uncommitted changes on top of that commit." if sha != commit else ""
    return f"Data: git checkout {sha} && {data}. {files}{dirty}"


def latest_version(client: MlflowClient, name: str) -> ModelVersion | None:
    """The highest version of a registered model, or None."""
    if "'" in name:
        raise RegisterError(f"registered model name {name!r} must not contain a quote")
    found = client.search_model_versions(
        f"name = '{name}'", max_results=1, order_by=["version_number DESC"]
    )
    return found[0] if found else None


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def version_tags(
    inputs: ModelInputs, trained_params: dict[str, Any], lineage: Lineage
) -> dict[str, str]:
    """The lineage tags of a new version."""
    class_weights = inputs.record.get("class_weights")
    return {
        tag.DATA_VERSION: lineage.data_version,
        tag.GIT_COMMIT: lineage.git_commit,
        tag.PARAMS_HASH: params_hash(trained_params),
        tag.PARAMS: _compact(trained_params),
        tag.MODEL_MD5: inputs.model_md5,
        tag.VALIDATION: lineage.validation,
        tag.CLASS_WEIGHTS: _compact(class_weights) if class_weights else tag.NONE,
        tag.VERSION_PIPELINE_RUN: lineage.pipeline_run,
    }


def register_version(
    client: MlflowClient,
    model_uri: str,
    registered_name: str,
    inputs: ModelInputs,
    trained_params: dict[str, Any],
    lineage: Lineage,
) -> str:
    """Register a logged model as a new version with its lineage; it becomes `challenger`."""
    import mlflow

    version = mlflow.register_model(
        model_uri, registered_name, tags=version_tags(inputs, trained_params, lineage)
    )
    number = str(version.version)
    client.update_model_version(
        registered_name,
        number,
        description=describe(lineage.git_commit, lineage.data_version, inputs.model),
    )
    # Every new version is the challenger; only the gate may move `champion`.
    client.set_registered_model_alias(registered_name, tag.CHALLENGER, number)
    return number


def new_entry(
    inputs: ModelInputs, registered_name: str, version: str, run_id: str
) -> RegisteredModel:
    """The entry of a version this call registered (the gate fills in its decision)."""
    headline = headline_metric(inputs.model)
    return RegisteredModel(
        inputs.model,
        registered_name,
        version,
        run_id,
        headline,
        float(inputs.metrics[headline]),
        reused=False,
        metrics=scalar_metrics(inputs.metrics),
    )


def _optional_float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, tag.NONE) else None
    except ValueError:
        return None


def reused_entry(
    client: MlflowClient, inputs: ModelInputs, version: ModelVersion
) -> RegisteredModel:
    """The unchanged version, with the gate decision recorded when it was registered."""
    headline = headline_metric(inputs.model)
    value = float(inputs.metrics[headline])
    if version.run_id:
        value = client.get_run(version.run_id).data.metrics.get(headline, value)
    tags = version.tags
    champion = tags.get(tag.GATE_CHAMPION_VERSION)
    return RegisteredModel(
        inputs.model,
        version.name,
        str(version.version),
        version.run_id or "",
        headline,
        float(value),
        reused=True,
        decision=tags.get(tag.GATE_DECISION, ""),
        reason=tags.get(tag.GATE_REASON, ""),
        champion_version=None if champion in (None, tag.NONE) else champion,
        champion_score=_optional_float(tags.get(tag.GATE_CHAMPION_SCORE)),
        metrics=scalar_metrics(inputs.metrics),
        judge=tags.get(tag.GATE_JUDGE, ""),
    )
