"""The validation report: one CheckResult per check, the JSON DVC tracks as metrics, and its
markdown table (shared by the validation summary and the run report).

Imports neither Great Expectations nor pandas: readers of metrics/validation.json use it too.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from tasks.atomic import write_json, write_text
from tasks.paths import VALIDATION_METRICS

ERROR: Final = "error"
WARNING: Final = "warning"
SEVERITIES: tuple[str, ...] = (ERROR, WARNING)
CHECK_INPUT = "input"  # the pseudo-check of a report on input that cannot be validated at all
FLOAT_DIGITS = 6
MAX_LISTED = 20  # offending files (or pairs, groups) listed per check
DESCRIBED_FILES = 5  # offending files quoted in one describe() line

VALIDATION_TABLE_HEADER = ["check", "severity", "status", "observed", "threshold"]
MAX_OBSERVED_CHARS = 120


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check: observed value, threshold (text), severity, offending files."""

    name: str
    success: bool
    observed: Any
    expected: str
    severity: str = ERROR
    offending: list[str] = field(default_factory=list)
    offending_count: int = 0

    def describe(self) -> str:
        """One human-readable line, e.g. 'decodes [error]: observed 2, expected 0 ...'."""
        line = (
            f"{self.name} [{self.severity}]: observed {self.observed!r}, expected {self.expected}"
        )
        if self.offending:
            line += "; files: " + ", ".join(self.offending[:DESCRIBED_FILES])
            if self.offending_count > DESCRIBED_FILES:
                line += f" (+{self.offending_count - DESCRIBED_FILES} more)"
        return line


@dataclass
class ValidationReport:
    """Everything the validation step found; serialised to metrics/validation.json."""

    checks: list[CheckResult]
    class_counts: dict[str, int] = field(default_factory=dict)
    kl_divergence: float | None = None
    imbalance_ratio: float | None = None
    class_weights: dict[str, float] | None = None
    apply_class_weights: bool = False
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> list[CheckResult]:
        """Error-severity checks that failed: any of them stops the pipeline."""
        return [c for c in self.checks if not c.success and c.severity == ERROR]

    @property
    def warnings(self) -> list[CheckResult]:
        """Warning-severity checks that failed: reported, the run continues."""
        return [c for c in self.checks if not c.success and c.severity == WARNING]

    @property
    def success(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (numpy scalars converted, floats rounded to 6 decimals)."""
        data: dict[str, Any] = jsonable(
            {
                "success": self.success,
                "checks": [asdict(check) for check in self.checks],
                "failed_checks": [check.name for check in self.failures],
                "warnings": [check.describe() for check in self.warnings],
                "class_counts": self.class_counts,
                "kl_divergence": self.kl_divergence,
                "imbalance_ratio": self.imbalance_ratio,
                "class_weights": self.class_weights,
                "apply_class_weights": self.apply_class_weights,
                **self.figures,
            }
        )
        return data


class ValidationError(ValueError):
    """The dataset failed validation; ``report`` is None for structural input errors."""

    def __init__(self, message: str, report: ValidationReport | None = None) -> None:
        super().__init__(message)
        self.report = report

    @classmethod
    def from_report(cls, report: ValidationReport) -> ValidationError:
        """Build the error whose message lists every failed error check on its own line."""
        lines = [f"  - {check.describe()}" for check in report.failures]
        return cls(f"{len(lines)} data check(s) failed:\n" + "\n".join(lines), report)


def structural_report(message: str) -> ValidationReport:
    """Report written when the input cannot be validated at all, so the metric file exists."""
    check = CheckResult(CHECK_INPUT, False, message, "a readable, non-empty image profile")
    return ValidationReport(checks=[check])


def jsonable(value: Any) -> Any:
    """Recursively convert numpy types and round floats so the JSON is byte-stable."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return [jsonable(item) for item in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if not math.isfinite(value):
            return None  # JSON has no inf/nan; None means "undefined" (e.g. an empty class)
        rounded = round(value, FLOAT_DIGITS)
        return 0.0 if rounded == 0 else rounded
    return value


def write_report(report: ValidationReport, path: Path | str = VALIDATION_METRICS) -> Path:
    """Write the report as deterministic JSON: identical data gives identical bytes."""
    return write_json(path, report.to_dict(), allow_nan=False)


def validation_rows(checks: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    """One row per check of metrics/validation.json, in VALIDATION_TABLE_HEADER's order.

    A failed check is "FAILED" when its severity is error (it stopped the run), else "warning".
    """
    rows = []
    for check in checks:
        severity = check.get("severity", ERROR)
        failed = "FAILED" if severity == ERROR else "warning"
        status = "ok" if check.get("success") else failed
        observed = json.dumps(check.get("observed"), sort_keys=True)
        if len(observed) > MAX_OBSERVED_CHARS:
            observed = observed[: MAX_OBSERVED_CHARS - 3] + "..."
        cells = [check.get("name"), severity, status, observed, check.get("expected")]
        rows.append([str(cell) for cell in cells])
    return rows


def validation_markdown(report: ValidationReport | Mapping[str, Any]) -> str:
    """Markdown summary: verdict, class weights, every check, offending files."""
    data = report.to_dict() if isinstance(report, ValidationReport) else dict(report)
    checks = data.get("checks", [])
    verdict = "passed" if data.get("success") else "FAILED: training will not run"
    lines = [f"# Data validation {verdict}", ""]
    if data.get("apply_class_weights"):
        weights = ", ".join(f"{k}: {v:.3g}" for k, v in (data.get("class_weights") or {}).items())
        lines += [
            f"Class imbalance in the warning band: training applies class weights ({weights}).",
            "",
        ]
    lines += [
        "| " + " | ".join(VALIDATION_TABLE_HEADER) + " |",
        "|" + "---|" * len(VALIDATION_TABLE_HEADER),
    ]
    for row in validation_rows(checks):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    lines += source_lines(data)
    for check in checks:
        if check.get("success") or not check.get("offending"):
            continue
        lines += [
            "",
            f"**{check['name']}**: {check.get('offending_count', 0)} offending "
            f"(first {len(check['offending'])}):",
            "",
        ]
        lines += [f"- `{item}`" for item in check["offending"]]
    return "\n".join(lines) + "\n"


HISTOGRAM_WIDTH = 30  # characters of the longest bar


def source_lines(data: Mapping[str, Any]) -> list[str]:
    """The source images' size and colour-mode counts as text histograms (before the image
    policy), or nothing when the report has none."""
    lines: list[str] = []
    for key, title in (("source_sizes", "size (HxW)"), ("source_modes", "colour mode")):
        counts = data.get(key) or {}
        if not counts:
            continue
        top = max(counts.values())
        lines += ["", f"Source images by {title}:", "", "```"]
        width = max(len(str(name)) for name in counts)
        for name, count in counts.items():
            bar = "#" * max(1, round(HISTOGRAM_WIDTH * count / top))
            lines.append(f"{name:>{width}} {bar} {count}")
        lines.append("```")
    return lines


SOURCE_PAGE = "source_images.html"  # in the Data Docs folder, next to GX's index.html


def write_source_page(data: Mapping[str, Any], docs_dir: Path) -> Path | None:
    """A static page of the source images' size and colour-mode histograms (bars in plain
    HTML, no script) in the Data Docs folder; None when the report has no source counts."""
    sections = []
    for key, title in (("source_sizes", "size (height x width)"), ("source_modes", "colour mode")):
        counts = data.get(key) or {}
        if not counts:
            continue
        top = max(counts.values())
        rows = "".join(
            f"<tr><td>{html.escape(str(name))}</td><td><div style='background:#4c78a8;"
            f"height:1em;width:{max(1, round(300 * count / top))}px'></div></td>"
            f"<td>{count}</td></tr>"
            for name, count in counts.items()
        )
        sections.append(f"<h2>Source images by {title}</h2><table>{rows}</table>")
    if not sections:
        return None
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Source images</title></head>"
        "<body><h1>Source images before the image policy</h1>"
        + "".join(sections)
        + "</body></html>"
    )
    return write_text(docs_dir / SOURCE_PAGE, page)
