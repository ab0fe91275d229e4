"""The end-of-run summary: which stages ran, and per model its headline metric, MLflow run and
registered version. Read from the files the stages wrote, so it is the same whether the pipeline
ran through Prefect or `dvc repro`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.paths import PREPARED_META_FILE, REGISTRY_REPORT, VALIDATION_METRICS
from tasks.registry.lineage import data_version
from tasks.stages import StageRun


@dataclass
class RunSummary:
    dataset: str
    data_version: str
    ingested: bool
    validation_passed: bool
    stages_run: list[str]
    stages_skipped: list[str]
    models: list[dict[str, Any]] = field(default_factory=list)


def read_run_summary(
    root: Path, stage_runs: Sequence[StageRun] = (), ingested: bool = False
) -> RunSummary:
    """Read the summary from reports/registry.json, metrics/validation.json and the data
    version; `stage_runs` says which stages ran."""
    from tasks.prepare import load_meta  # imports NumPy: kept out of the CLI's start-up

    registry = json.loads((root / REGISTRY_REPORT).read_text())
    validation = json.loads((root / VALIDATION_METRICS).read_text())
    return RunSummary(
        dataset=str(load_meta(root / PREPARED_META_FILE)["name"]),
        data_version=data_version(root),
        ingested=ingested,
        validation_passed=bool(validation.get("success")),
        stages_run=[run.stage for run in stage_runs if run.ran],
        stages_skipped=[run.stage for run in stage_runs if not run.ran],
        models=registry,
    )


def format_table(models: Sequence[dict[str, Any]]) -> str:
    """Aligned text table: model, headline metric, MLflow run id, registered version."""
    header = ("model", "metric", "value", "mlflow run", "registered model", "version", "", "gate")
    rows = [header] + [
        (
            entry["model"],
            entry["headline_metric"],
            f"{entry['headline_value']:.4f}",
            entry["run_id"],
            entry["registered_name"],
            str(entry["version"]),
            "unchanged" if entry.get("reused") else "new",
            entry.get("decision") or "-",
        )
        for entry in models
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def summary_markdown(summary: RunSummary) -> str:
    """Markdown for the Prefect run artifact."""
    lines = [
        f"# Retrain: {summary.dataset}",
        "",
        f"- data version (data.dvc md5): `{summary.data_version}`"
        + (" (newly ingested)" if summary.ingested else ""),
        f"- validation: {'passed' if summary.validation_passed else 'FAILED'}",
        f"- stages run: {', '.join(summary.stages_run) or 'none (everything up to date)'}",
        "",
        "| model | metric | value | MLflow run | registered model | version | | gate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in summary.models:
        lines.append(
            f"| {entry['model']} | {entry['headline_metric']} | {entry['headline_value']:.4f} "
            f"| `{entry['run_id']}` | {entry['registered_name']} | {entry['version']} "
            f"| {'unchanged' if entry.get('reused') else 'new'} "
            f"| {entry.get('decision') or '-'} |"
        )
    return "\n".join(lines) + "\n"
