"""reports/registry.json and the table the register stage prints: one entry per model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from tasks.atomic import write_json
from tasks.paths import REGISTRY_REPORT
from tasks.registry.versions import RegisteredModel

TABLE_HEADER = (
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


def write_registry_report(models: Sequence[RegisteredModel], path: Path = REGISTRY_REPORT) -> None:
    """The entries as a JSON list in field order, written atomically (a DVC output)."""
    write_json(path, [asdict(entry) for entry in models], sort_keys=False)


def _row(entry: RegisteredModel) -> tuple[str, ...]:
    champion = (
        f"v{entry.champion_version} {entry.champion_score:.4f}"
        if entry.champion_version and entry.champion_score is not None
        else "-"
    )
    return (
        entry.model,
        entry.headline_metric,
        f"{entry.headline_value:.4f}",
        entry.run_id,
        entry.registered_name,
        entry.version,
        "unchanged" if entry.reused else "new",
        champion,
        entry.decision or "-",
    )


def format_table(models: Sequence[RegisteredModel]) -> str:
    """Aligned text table of the registry entries, one row per model."""
    rows = [TABLE_HEADER, *(_row(entry) for entry in models)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(TABLE_HEADER))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
