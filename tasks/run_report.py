"""The run report: one per pipeline run, written by the register stage (markdown and HTML).

It holds the data validation summary, each model's metrics next to the champion's (re-scored on
the same test split) with the difference, the plots, and the gate decisions. The markdown links
the plots by relative path (for reading in the repository and as a Prefect artifact); the HTML
embeds them, so the copy logged to MLflow is self-contained.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.paths import PLOTS_DIR, REPORTS_DIR
from tasks.validation_table import VALIDATION_TABLE_HEADER, validation_rows

REPORT_MARKDOWN = REPORTS_DIR / "run_report.md"
REPORT_HTML = REPORTS_DIR / "run_report.html"
LOWER_IS_BETTER = {"test_loss", "expected_calibration_error", "frechet_distance"}
REFERENCE_METRICS = {"frechet_floor"}  # a property of the data (train vs test), not the model
COMPARED_METRICS: dict[str, tuple[str, ...]] = {
    "cnn": ("test_accuracy", "macro_f1", "test_loss", "expected_calibration_error"),
    "rnn": ("test_accuracy", "macro_f1", "test_loss", "expected_calibration_error"),
    "gan": ("recognisable_share", "classes_covered", "frechet_distance", "frechet_floor"),
}


@dataclass
class Report:
    """Blocks rendered to both formats: (kind, payload) with kind h1/h2/p/ul/table/img."""

    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def add(self, kind: str, payload: Any) -> None:
        self.blocks.append((kind, payload))


COUNT_METRICS = {"classes_covered", "classes_total", "test_images", "generated_images"}


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


def _direction(metric: str) -> str:
    if metric in REFERENCE_METRICS:
        return "reference"
    return "lower" if metric in LOWER_IS_BETTER else "higher"


def build_report(
    root: Path,
    entries: Sequence[dict[str, Any]],
    validation: dict[str, Any],
    *,
    data_version: str,
    git_commit: str,
    mlflow_run_id: str | None,
    tracking_uri: str,
) -> Report:
    """Assemble the report from the registry entries (RegisteredModel as dicts)."""
    report = Report()
    dataset = entries[0]["registered_name"].rsplit("-", 1)[0] if entries else "?"
    report.add("h1", f"Pipeline run report: {dataset}")
    report.add(
        "ul",
        [
            f"data version (data.dvc md5): `{data_version}`; restore with "
            f"`git checkout {git_commit.removesuffix('-dirty')} && dvc checkout data.dvc`",
            f"git commit: `{git_commit}`",
            f"MLflow run: `{mlflow_run_id}` ({tracking_uri})"
            if mlflow_run_id
            else "MLflow run: none (no model changed; versions below are the registered ones)",
        ],
    )
    report.add("h2", "Data validation")
    report.add("ul", _validation_items(validation))
    if validation.get("checks"):
        report.add("table", (VALIDATION_TABLE_HEADER, validation_rows(validation["checks"])))

    report.add("h2", "Gate decisions")
    rows = []
    for entry in entries:
        champion = entry.get("champion_version")
        rows.append(
            [
                entry["model"],
                f"{entry['registered_name']} v{entry['version']}"
                + (" (unchanged)" if entry.get("reused") else ""),
                entry["headline_metric"],
                _number(entry["headline_value"]),
                f"v{champion} {_number(entry.get('champion_score'))}" if champion else "none",
                _difference(entry["headline_value"], entry.get("champion_score")),
                (entry.get("decision") or "-").upper(),
                entry.get("reason") or "-",
            ]
        )
    report.add(
        "table",
        (
            [
                "model",
                "version",
                "metric",
                "challenger",
                "champion (re-scored)",
                "difference",
                "decision",
                "reason",
            ],
            rows,
        ),
    )

    for entry in entries:
        model = entry["model"]
        champion = entry.get("champion_version")
        report.add("h2", f"{model}: {entry['registered_name']} v{entry['version']}")
        if entry.get("judge"):
            report.add("p", f"Both generators judged by {entry['judge']}.")
        metrics = entry.get("metrics") or {}
        champion_metrics = entry.get("champion_metrics") or {}
        names = [name for name in COMPARED_METRICS.get(model, ()) if name in metrics]
        champion_header = f"champion v{champion} (re-scored)" if champion else "champion"
        report.add(
            "table",
            (
                ["metric", f"v{entry['version']}", champion_header, "difference", "better"],
                [
                    [
                        name,
                        _number(metrics.get(name), name),
                        _number(champion_metrics.get(name), name),
                        _difference(metrics.get(name), champion_metrics.get(name)),
                        _direction(name),
                    ]
                    for name in names
                ],
            ),
        )
        plots = sorted((Path(root) / PLOTS_DIR / "images" / model).glob("*.png"))
        for plot in plots:
            report.add("img", (f"{model} {plot.stem}", plot))
    return report


def render_markdown(report: Report, base: Path) -> str:
    """Markdown; images linked relative to `base` (the folder the file is written to)."""
    import os

    lines: list[str] = []
    for kind, payload in report.blocks:
        if kind == "h1":
            lines += [f"# {payload}", ""]
        elif kind == "h2":
            lines += [f"## {payload}", ""]
        elif kind == "p":
            lines += [payload, ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in payload] + [""]
        elif kind == "table":
            header, rows = payload
            cells = [[str(cell).replace("|", "\\|") for cell in row] for row in rows]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(row) + " |" for row in cells]
            lines.append("")
        elif kind == "img":
            alt, path = payload
            lines += [f"![{alt}]({Path(os.path.relpath(path, base)).as_posix()})", ""]
    return "\n".join(lines)


def _inline(text: str) -> str:
    """Escape, then render `code` spans (the only inline markup the report uses)."""
    parts = html.escape(str(text)).split("`")
    return "".join(
        f"<code>{part}</code>" if index % 2 else part for index, part in enumerate(parts)
    )


def render_html(report: Report) -> str:
    """A self-contained HTML page: plots embedded as base64 PNG."""
    body: list[str] = []
    title = "Pipeline run report"
    for kind, payload in report.blocks:
        if kind == "h1":
            title = str(payload)
            body.append(f"<h1>{_inline(payload)}</h1>")
        elif kind == "h2":
            body.append(f"<h2>{_inline(payload)}</h2>")
        elif kind == "p":
            body.append(f"<p>{_inline(payload)}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in payload) + "</ul>")
        elif kind == "table":
            header, rows = payload
            head = "".join(f"<th>{_inline(cell)}</th>" for cell in header)
            cells = "".join(
                "<tr>" + "".join(f"<td>{_inline(cell)}</td>" for cell in row) + "</tr>"
                for row in rows
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
        elif kind == "img":
            alt, path = payload
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            body.append(
                f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(alt)}</figcaption></figure>"
            )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "img{max-width:480px;image-rendering:pixelated}"
    )
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(root: Path, report: Report) -> tuple[Path, Path]:
    """Write reports/run_report.md and .html (each replaced atomically)."""
    import os

    markdown_path, html_path = Path(root) / REPORT_MARKDOWN, Path(root) / REPORT_HTML
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    for path, text in (
        (markdown_path, render_markdown(report, markdown_path.parent)),
        (html_path, render_html(report)),
    ):
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    return markdown_path, html_path


def log_to_mlflow(root: Path) -> None:
    """Attach both files to the active MLflow run under report/."""
    import mlflow

    for path in (REPORT_MARKDOWN, REPORT_HTML):
        mlflow.log_artifact(str(Path(root) / path), "report")


def read_markdown(root: Path) -> str | None:
    """The last run report's markdown, or None when the register stage has not run yet."""
    path = Path(root) / REPORT_MARKDOWN
    return path.read_text(encoding="utf-8") if path.is_file() else None
