"""The run report: one per pipeline run, written by the register stage (markdown and HTML).

It holds the data validation summary, each model's metrics next to the champion's (re-scored on
the same test split) with the difference, the plots, and the gate decisions. `build_report`
assembles the content once (a RunReport); Jinja2 templates in templates/ lay it out. The
markdown links the plots by relative path (for reading in the repository and as a Prefect
artifact); the HTML embeds them, so the copy logged to MLflow is self-contained.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from tasks.atomic import write_text
from tasks.paths import DATA_DVC_FILE, RUN_REPORT_HTML, RUN_REPORT_MARKDOWN, images_dir
from tasks.registry.versions import RegisteredModel
from tasks.validation.report import VALIDATION_TABLE_HEADER, validation_rows

LOWER_IS_BETTER = {
    "test_loss",
    "expected_calibration_error",
    "frechet_distance",
    "frechet_ratio",
    "max_class_frechet_ratio",
}
# Properties of the data (real train images vs test images), not of the model: the GAN's
# Frechet floor and the real-vs-real ceilings of its diversity measures.
REFERENCE_METRICS = {"frechet_floor", "coverage_ceiling", "recall_ceiling", "precision_ceiling"}
COUNT_METRICS = {"classes_covered", "classes_total", "test_images", "generated_images"}
COMPARED_METRICS: dict[str, tuple[str, ...]] = {
    "cnn": ("test_accuracy", "macro_f1", "test_loss", "expected_calibration_error"),
    "rnn": ("test_accuracy", "macro_f1", "test_loss", "expected_calibration_error"),
    "gan": (
        "diversity_score",
        "recognisable_share",
        "classes_covered",
        "coverage",
        "coverage_ceiling",
        "min_class_coverage",
        "recall",
        "recall_ceiling",
        "min_class_recall",
        "precision",
        "precision_ceiling",
        "frechet_distance",
        "frechet_floor",
        "frechet_ratio",
        "max_class_frechet_ratio",
    ),
}
PER_CLASS_HEADER = [
    "class",
    "recognisable",
    "coverage",
    "real coverage",
    "recall",
    "real recall",
    "Frechet",
    "floor",
    "ratio",
]
GATE_HEADER = [
    "model",
    "version",
    "metric",
    "challenger",
    "champion (re-scored)",
    "difference",
    "decision",
    "reason",
]
TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Figure:
    alt: str
    path: Path


@dataclass(frozen=True)
class ModelSection:
    """One model: its version, the GAN's judge, its metrics vs the champion's, its plots."""

    heading: str
    judge: str
    metrics: Table
    figures: list[Figure] = field(default_factory=list)
    per_class: Table | None = None  # the GAN's measures per class (this version's)


@dataclass(frozen=True)
class RunReport:
    """The report's content, independent of its format."""

    title: str
    facts: list[str]  # data version, commit, MLflow run
    validation: list[str]  # verdict, warnings, class weights
    validation_checks: Table | None
    gate: Table
    models: list[ModelSection]


def _number(value: Any, name: str = "") -> str:
    if value is None:
        return "-"
    if name in COUNT_METRICS and isinstance(value, int | float):
        return f"{value:.0f}"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _difference(challenger: Any, champion: Any) -> str:
    if not isinstance(challenger, int | float) or not isinstance(champion, int | float):
        return "-"
    return f"{challenger - champion:+.4f}"


def _direction(metric: str) -> str:
    if metric in REFERENCE_METRICS:
        return "reference"
    return "lower" if metric in LOWER_IS_BETTER else "higher"


def _facts(
    data_version: str, git_commit: str, mlflow_run_id: str | None, tracking_uri: str
) -> list[str]:
    return [
        f"data version (data.dvc md5): `{data_version}`; restore with "
        f"`git checkout {git_commit.removesuffix('-dirty')} && dvc checkout {DATA_DVC_FILE}`",
        f"git commit: `{git_commit}`",
        f"MLflow run: `{mlflow_run_id}` ({tracking_uri})"
        if mlflow_run_id
        else "MLflow run: none (no model changed; versions below are the registered ones)",
    ]


def _validation_items(validation: dict[str, Any]) -> list[str]:
    """Verdict, warnings and the class-weight decision (the per-check table follows)."""
    items = [f"result: {'passed' if validation.get('success') else 'FAILED'}"]
    for warning in validation.get("warnings") or []:
        text = warning.get("message", warning) if isinstance(warning, dict) else warning
        items.append(f"warning: {text}")
    if "apply_class_weights" in validation:
        applied = "applied" if validation.get("apply_class_weights") else "not applied"
        items.append(f"class weights: {applied}")
    return items


def _gate_row(entry: RegisteredModel) -> list[str]:
    champion = entry.champion_version
    return [
        entry.model,
        f"{entry.registered_name} v{entry.version}" + (" (unchanged)" if entry.reused else ""),
        entry.headline_metric,
        _number(entry.headline_value),
        f"v{champion} {_number(entry.champion_score)}" if champion else "none",
        _difference(entry.headline_value, entry.champion_score),
        (entry.decision or "-").upper(),
        entry.reason or "-",
    ]


def _model_section(root: Path, entry: RegisteredModel) -> ModelSection:
    champion = entry.champion_version
    metrics, theirs = entry.metrics, entry.champion_metrics
    names = [name for name in COMPARED_METRICS.get(entry.model, ()) if name in metrics]
    champion_header = f"champion v{champion} (re-scored)" if champion else "champion"
    table = Table(
        ["metric", f"v{entry.version}", champion_header, "difference", "better"],
        [
            [
                name,
                _number(metrics.get(name), name),
                _number(theirs.get(name), name),
                _difference(metrics.get(name), theirs.get(name)),
                _direction(name),
            ]
            for name in names
        ],
    )
    figures = [
        Figure(f"{entry.model} {plot.stem}", plot)
        for plot in sorted(images_dir(entry.model, root).glob("*.png"))
    ]
    heading = f"{entry.model}: {entry.registered_name} v{entry.version}"
    return ModelSection(heading, entry.judge, table, figures, _per_class_table(metrics))


def _per_class_table(metrics: dict[str, Any]) -> Table | None:
    """The GAN's per-class fidelity and diversity next to real images' (None without them)."""
    per_class = metrics.get("per_class")
    if not isinstance(per_class, dict) or not per_class:
        return None
    recognisable = metrics.get("per_class_recognisable") or {}
    keys = ("coverage", "coverage_ceiling", "recall", "recall_ceiling")
    rows = [
        [
            name,
            _number(recognisable.get(name)),
            *(_number(scores.get(key)) for key in keys),
            *(_number(scores.get(key)) for key in ("frechet_distance", "frechet_floor")),
            _number(scores.get("frechet_ratio")),
        ]
        for name, scores in per_class.items()
        if isinstance(scores, dict)
    ]
    return Table(PER_CLASS_HEADER, rows)


def build_report(
    root: Path,
    entries: Sequence[RegisteredModel],
    validation: dict[str, Any],
    *,
    data_version: str,
    git_commit: str,
    mlflow_run_id: str | None,
    tracking_uri: str,
) -> RunReport:
    """Assemble the report from the registry entries and the validation report."""
    dataset = entries[0].registered_name.rsplit("-", 1)[0] if entries else "?"
    checks = validation.get("checks")
    return RunReport(
        title=f"Pipeline run report: {dataset}",
        facts=_facts(data_version, git_commit, mlflow_run_id, tracking_uri),
        validation=_validation_items(validation),
        validation_checks=Table(VALIDATION_TABLE_HEADER, validation_rows(checks))
        if checks
        else None,
        gate=Table(GATE_HEADER, [_gate_row(entry) for entry in entries]),
        models=[_model_section(Path(root), entry) for entry in entries],
    )


def _inline(text: Any) -> Markup:
    """Escape, then render `code` spans (the only inline markup the report uses)."""
    parts = html.escape(str(text)).split("`")
    return Markup(
        "".join(f"<code>{part}</code>" if index % 2 else part for index, part in enumerate(parts))
    )


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["md_cell"] = lambda cell: str(cell).replace("|", "\\|")
    environment.filters["inline"] = _inline
    environment.filters["escape_attribute"] = lambda text: Markup(html.escape(str(text)))
    return environment


def render_markdown(report: RunReport, base: Path) -> str:
    """Markdown; images linked relative to `base` (the folder the file is written to)."""

    def link(path: Path) -> str:
        return Path(os.path.relpath(path, base)).as_posix()

    template = _environment().get_template("run_report.md.j2")
    # Every block ends with a blank line; the file ends with the last block's line.
    return template.render(report=report, link=link).removesuffix("\n")


def render_html(report: RunReport) -> str:
    """A self-contained HTML page: plots embedded as base64 PNG."""

    def data_uri(path: Path) -> str:
        return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")

    template = _environment().get_template("run_report.html.j2")
    return template.render(report=report, data_uri=data_uri)


def write_report(root: Path, report: RunReport) -> tuple[Path, Path]:
    """Write reports/run_report.md and .html (each replaced atomically)."""
    markdown_path, html_path = Path(root) / RUN_REPORT_MARKDOWN, Path(root) / RUN_REPORT_HTML
    write_text(markdown_path, render_markdown(report, markdown_path.parent))
    write_text(html_path, render_html(report))
    return markdown_path, html_path


def read_markdown(root: Path) -> str | None:
    """The last run report's markdown, or None when the register stage has not run yet."""
    path = Path(root) / RUN_REPORT_MARKDOWN
    return path.read_text(encoding="utf-8") if path.is_file() else None
