"""Lineage facts attached to every registered model: code commit, data version, params, artifacts.

Each value answers "what exactly produced this model?": `git_commit` names the code, the
`data.dvc` md5 names the data (`dvc checkout` restores it), `params_hash` names the settings and
`dir_md5` names the trained artifact in the same form DVC writes into dvc.lock.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tasks.paths import DATA_DVC_FILE

UNKNOWN_COMMIT = "unknown"
_CHUNK = 1 << 20


class LineageError(ValueError):
    """A lineage input (e.g. data.dvc) is missing or malformed; the message names the file."""


def data_version(root: Path = Path(".")) -> str:
    """The md5 DVC recorded for `data/` in data.dvc: the id `dvc checkout` restores."""
    path = Path(root) / DATA_DVC_FILE
    if not path.is_file():
        raise LineageError(f"{path} not found: ingest the data and run `dvc add data` first")
    try:
        record = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise LineageError(f"{path}: not valid YAML ({error})") from error
    outs = record.get("outs") if isinstance(record, dict) else None
    md5 = (
        outs[0].get("md5")
        if isinstance(outs, list) and outs and isinstance(outs[0], dict)
        else None
    )
    if not isinstance(md5, str) or not md5:
        raise LineageError(f"{path}: expected `outs: [{{md5: ..., path: data}}]`, found no md5")
    return md5


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit(root: Path = Path(".")) -> str:
    """HEAD's sha, suffixed "-dirty" when tracked files differ from it; "unknown" outside git.

    Never raises: lineage is recorded on a best-effort basis and must not stop registration.
    """
    sha = _git(Path(root), "rev-parse", "--verify", "HEAD")
    if not sha:
        return UNKNOWN_COMMIT
    status = _git(Path(root), "status", "--porcelain", "--untracked-files=no")
    return f"{sha}-dirty" if status else sha


def params_hash(obj: Any) -> str:
    """First 12 hex digits of the sha256 of `obj` as canonical (sorted, compact) JSON."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def file_md5(path: Path) -> str:
    """md5 of a file's bytes (the hash DVC uses for a single-file output)."""
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def dir_md5(path: Path) -> str:
    """DVC-style directory hash: md5 of the sorted [{md5, relpath}] JSON list, plus ".dir".

    Matches the md5 DVC writes for a directory output, so a registered model's `model_md5`
    tag can be compared with dvc.lock directly.
    """
    path = Path(path)
    if not path.is_dir():
        raise LineageError(f"{path} is not a directory")
    entries = sorted(
        (
            {"md5": file_md5(file), "relpath": file.relative_to(path).as_posix()}
            for file in path.rglob("*")
            if file.is_file()
        ),
        key=lambda entry: entry["relpath"],
    )
    listing = json.dumps(entries, sort_keys=True).encode("utf-8")
    return hashlib.md5(listing, usedforsecurity=False).hexdigest() + ".dir"


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
            artifact_path="validation/validation.json",
            tracking_uri=client.tracking_uri,
        )
        report = json.loads(Path(local).read_text())
    except Exception as error:  # a missing artifact must not hide the rest of the lineage
        return [f"  (validation report not readable: {error})"]
    lines = [
        f"  result: {'passed' if report.get('success') else 'FAILED'} "
        f"(artifact validation/validation.json of run {parent_run_id})"
    ]
    for check in report.get("checks") or []:
        if isinstance(check, dict):
            mark = "ok" if check.get("success") else "FAILED"
            lines.append(f"  - {check.get('name')}: {mark}, observed {check.get('observed')!r}")
    for warning in report.get("warnings") or []:
        lines.append(f"  - warning: {warning}")
    return lines


def _gate_line(tags: dict[str, str]) -> str:
    if "gate.decision" not in tags:
        return "no decision recorded"
    champion = tags.get("gate.champion_version", "none")
    against = (
        f"vs champion v{champion} {tags.get('gate.champion_score')}"
        if champion != "none"
        else "no champion to compare with"
    )
    return (
        f"{tags['gate.decision']} ({tags.get('gate.metric')} {tags.get('gate.challenger_score')} "
        f"{against}): {tags.get('gate.reason')}"
    )


def describe_version(client: Any, name: str, ref: str) -> str:
    """Everything that produced a registered version, as text for `imgflow lineage`."""
    version = resolve_version(client, name, ref)
    model = client.get_registered_model(name)
    aliases = sorted(alias for alias, number in model.aliases.items() if number == version.version)
    tags = dict(version.tags)
    lines = [
        f"{name} version {version.version}"
        + (f" (aliases: {', '.join(aliases)})" if aliases else ""),
        f"  source: {version.source}",
    ]
    parent_id = None
    if version.run_id:
        run = client.get_run(version.run_id)
        experiment = client.get_experiment(run.info.experiment_id)
        parent_id = run.data.tags.get("mlflow.parentRunId")
        lines += [
            "",
            f"MLflow run: {run.info.run_id} ({run.info.run_name!r}, experiment "
            f"{experiment.name!r} id {experiment.experiment_id}); pipeline run {parent_id}",
            f"  UI: #/experiments/{experiment.experiment_id}/runs/{run.info.run_id}",
            "Params:",
            *(f"  {key} = {value}" for key, value in sorted(run.data.params.items())),
            "Metrics (final values):",
            *(f"  {key} = {value:.6g}" for key, value in sorted(run.data.metrics.items())),
        ]
        curves = []
        for key in sorted(run.data.metrics):
            history = client.get_metric_history(run.info.run_id, key)
            if len(history) > 1:
                values = [point.value for point in sorted(history, key=lambda p: p.step)]
                curves.append(f"  {key}: {len(values)} epochs, {values[0]:.4g} -> {values[-1]:.4g}")
        lines += ["Per-epoch history:", *(curves or ["  (none)"])]
        plots = [
            item.path
            for folder in ("plots/images", "plots/history", "plots/confusion")
            for item in client.list_artifacts(run.info.run_id, folder)
        ]
        lines += ["Plots (run artifacts):", *(f"  {path}" for path in plots or ["(none)"])]
    commit = tags.get("git_commit", UNKNOWN_COMMIT)
    sha = commit.removesuffix("-dirty")
    lines += [
        "",
        f"Data version (data.dvc md5): {tags.get('data_version', 'unknown')}",
        "  restore: "
        + (
            f"git checkout {sha} && dvc checkout {DATA_DVC_FILE}"
            if commit != UNKNOWN_COMMIT
            else f"dvc checkout {DATA_DVC_FILE} (code commit unknown)"
        ),
        f"  description: {version.description or '-'}",
        f"Git commit: {commit}",
        f"Params hash: {tags.get('params_hash', '-')}",
        f"Class weights used: {tags.get('class_weights', '-')}",
        f"Validation: {tags.get('validation', '-')}",
        "Validation report of that data:",
        *_validation_lines(client, parent_id),
        "",
        "Gate: " + _gate_line(tags),
    ]
    if "rollback.at" in tags:
        lines.append(
            f"Rollback: made champion by {tags.get('rollback.by')} at {tags['rollback.at']} "
            f"(from v{tags.get('rollback.from')}, forced {tags.get('rollback.forced')}): "
            f"{tags.get('rollback.reason')}"
        )
    return "\n".join(lines)
