"""`imgflow lineage`: everything that produced one registered version, as readable text.

Read back from the registry and its runs: the run's params, metrics and curves, the data version
with the command that restores it, the commit, the validation report of that data, the gate's
decision and any rollback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tasks.paths import DATA_DVC_FILE
from tasks.registry import tags as tag
from tasks.registry.lineage import UNKNOWN_COMMIT, LineageError

PLOT_FOLDERS = ("plots/images", "plots/history", "plots/confusion")
VALIDATION_ARTIFACT = "validation/validation.json"


def resolve_version(client: Any, name: str, ref: str) -> Any:
    """A ModelVersion from "3", "v3" or "@champion"; LineageError when there is none."""
    from mlflow.exceptions import MlflowException

    try:
        if ref.startswith("@"):
            return client.get_model_version_by_alias(name, ref[1:])
        return client.get_model_version(name, ref.removeprefix("v"))
    except MlflowException as error:
        raise LineageError(f"{name} has no version or alias {ref!r}") from error


def _validation_lines(client: Any, parent_run_id: str | None) -> list[str]:
    """The validation report logged on the pipeline's parent run, summarised."""
    import mlflow

    if not parent_run_id:
        return ["  (no parent pipeline run recorded)"]
    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=parent_run_id,
            artifact_path=VALIDATION_ARTIFACT,
            tracking_uri=client.tracking_uri,
        )
        report = json.loads(Path(local).read_text())
    except Exception as error:  # a missing artifact must not hide the rest of the lineage
        return [f"  (validation report not readable: {error})"]
    lines = [
        f"  result: {'passed' if report.get('success') else 'FAILED'} "
        f"(artifact {VALIDATION_ARTIFACT} of run {parent_run_id})"
    ]
    for check in report.get("checks") or []:
        if isinstance(check, dict):
            mark = "ok" if check.get("success") else "FAILED"
            lines.append(f"  - {check.get('name')}: {mark}, observed {check.get('observed')!r}")
    for warning in report.get("warnings") or []:
        lines.append(f"  - warning: {warning}")
    return lines


def _gate_line(tags: dict[str, str]) -> str:
    if tag.GATE_DECISION not in tags:
        return "no decision recorded"
    champion = tags.get(tag.GATE_CHAMPION_VERSION, tag.NONE)
    against = (
        f"vs champion v{champion} {tags.get(tag.GATE_CHAMPION_SCORE)}"
        if champion != tag.NONE
        else "no champion to compare with"
    )
    return (
        f"{tags[tag.GATE_DECISION]} ({tags.get(tag.GATE_METRIC)} "
        f"{tags.get(tag.GATE_CHALLENGER_SCORE)} {against}): {tags.get(tag.GATE_REASON)}"
    )


def _curves(client: Any, run: Any) -> list[str]:
    """One line per metric logged at more than one step (the per-epoch training curves)."""
    curves = []
    for key in sorted(run.data.metrics):
        history = client.get_metric_history(run.info.run_id, key)
        if len(history) > 1:
            values = [point.value for point in sorted(history, key=lambda p: p.step)]
            curves.append(f"  {key}: {len(values)} epochs, {values[0]:.4g} -> {values[-1]:.4g}")
    return curves


def _run_lines(client: Any, run_id: str) -> tuple[list[str], str | None]:
    """The version's run: ids, params, final metrics, curves and plots; and its parent run id."""
    run = client.get_run(run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    parent_id = run.data.tags.get(tag.PARENT_RUN_ID)
    plots = [
        item.path
        for folder in PLOT_FOLDERS
        for item in client.list_artifacts(run.info.run_id, folder)
    ]
    lines = [
        "",
        f"MLflow run: {run.info.run_id} ({run.info.run_name!r}, experiment "
        f"{experiment.name!r} id {experiment.experiment_id}); pipeline run {parent_id}",
        f"  UI: #/experiments/{experiment.experiment_id}/runs/{run.info.run_id}",
        "Params:",
        *(f"  {key} = {value}" for key, value in sorted(run.data.params.items())),
        "Metrics (final values):",
        *(f"  {key} = {value:.6g}" for key, value in sorted(run.data.metrics.items())),
        "Per-epoch history:",
        *(_curves(client, run) or ["  (none)"]),
        "Plots (run artifacts):",
        *(f"  {path}" for path in plots or ["(none)"]),
    ]
    return lines, parent_id


def _lineage_lines(client: Any, version: Any, parent_id: str | None) -> list[str]:
    """Data version and restore command, commit, params hash, validation, gate, rollback."""
    tags = dict(version.tags)
    commit = tags.get(tag.GIT_COMMIT, UNKNOWN_COMMIT)
    restore = (
        f"git checkout {commit.removesuffix('-dirty')} && dvc checkout {DATA_DVC_FILE}"
        if commit != UNKNOWN_COMMIT
        else f"dvc checkout {DATA_DVC_FILE} (code commit unknown)"
    )
    lines = [
        "",
        f"Data version (data.dvc md5): {tags.get(tag.DATA_VERSION, 'unknown')}",
        f"  restore: {restore}",
        f"  description: {version.description or '-'}",
        f"Git commit: {commit}",
        f"Params hash: {tags.get(tag.PARAMS_HASH, '-')}",
        f"Class weights used: {tags.get(tag.CLASS_WEIGHTS, '-')}",
        f"Validation: {tags.get(tag.VALIDATION, '-')}",
        "Validation report of that data:",
        *_validation_lines(client, parent_id),
        "",
        "Gate: " + _gate_line(tags),
    ]
    if tag.ROLLBACK_AT in tags:
        lines.append(
            f"Rollback: made champion by {tags.get(tag.ROLLBACK_BY)} at {tags[tag.ROLLBACK_AT]} "
            f"(from v{tags.get(tag.ROLLBACK_FROM)}, forced {tags.get(tag.ROLLBACK_FORCED)}): "
            f"{tags.get(tag.ROLLBACK_REASON)}"
        )
    return lines


def describe_version(client: Any, name: str, ref: str) -> str:
    """Everything that produced a registered version, as text for `imgflow lineage`."""
    version = resolve_version(client, name, ref)
    model = client.get_registered_model(name)
    aliases = sorted(alias for alias, number in model.aliases.items() if number == version.version)
    lines = [
        f"{name} version {version.version}"
        + (f" (aliases: {', '.join(aliases)})" if aliases else ""),
        f"  source: {version.source}",
    ]
    parent_id = None
    if version.run_id:
        run_lines, parent_id = _run_lines(client, version.run_id)
        lines += run_lines
    lines += _lineage_lines(client, version, parent_id)
    return "\n".join(lines)
