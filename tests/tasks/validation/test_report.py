"""The report: CheckResult lines, the JSON DVC tracks (rounding, undefined values, bytes), the
markdown table, and that readers of reports need neither Great Expectations nor pandas."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from tasks.validation.report import (
    MAX_OBSERVED_CHARS,
    CheckResult,
    ValidationError,
    ValidationReport,
    validation_markdown,
    validation_rows,
    write_report,
)

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_describe_quotes_five_files_and_counts_the_rest() -> None:
    files = [f"a/{i}.png" for i in range(20)]
    check = CheckResult("decodes", False, 42, "0 bad files", "error", files, 42)
    line = check.describe()
    assert line.startswith("decodes [error]: observed 42, expected 0 bad files; files: a/0.png")
    assert line.endswith("a/4.png (+37 more)")
    few = CheckResult("decodes", False, 2, "0", "error", ["x", "y"], 2)
    assert few.describe() == "decodes [error]: observed 2, expected 0; files: x, y"


def test_errors_stop_warnings_do_not_and_the_error_lists_each_failure() -> None:
    report = ValidationReport(
        checks=[
            CheckResult("drift", False, 0.5, "<= 0.1", "warning"),
            CheckResult("decodes", False, 1, "0", "error", ["b/x.png: zero-byte file"], 1),
            CheckResult("label_set", True, [], "exactly", "error"),
        ]
    )
    assert not report.success
    assert [c.name for c in report.failures] == ["decodes"]
    assert [c.name for c in report.warnings] == ["drift"]
    message = str(ValidationError.from_report(report))
    assert message.startswith("1 data check(s) failed:\n  - decodes [error]: observed 1")


def test_json_rounds_floats_turns_undefined_into_null_and_is_byte_stable(tmp_path: Path) -> None:
    report = ValidationReport(
        checks=[CheckResult("split_distribution", True, {"val": np.float64(1 / 3)}, "<= 1")],
        kl_divergence=1e-9,
        figures={"drift": {"class_kl": math.inf}, "images": np.int64(3)},
    )
    path = write_report(report, tmp_path / "metrics" / "validation.json")
    text = path.read_text()
    data = json.loads(text)
    assert data["checks"][0]["observed"] == {"val": 0.333333}
    assert data["kl_divergence"] == 0.0 and data["drift"] == {"class_kl": None}
    assert data["images"] == 3
    assert text == json.dumps(data, sort_keys=True, indent=2) + "\n"
    assert list(tmp_path.joinpath("metrics").iterdir()) == [path]  # no temporary file left


def test_rows_and_markdown_show_status_by_severity_and_offending_files() -> None:
    checks = [
        {"name": "decodes", "success": False, "severity": "error", "observed": 1,
         "expected": "0", "offending": ["b/x.png: zero-byte file"], "offending_count": 1},
        {"name": "drift", "success": False, "severity": "warning", "observed": "x" * 200,
         "expected": "a|b"},
        {"name": "label_set", "success": True, "severity": "error", "observed": [],
         "expected": "ok"},
    ]  # fmt: skip
    rows = validation_rows(checks)
    assert [row[2] for row in rows] == ["FAILED", "warning", "ok"]
    assert len(rows[1][3]) == MAX_OBSERVED_CHARS and rows[1][3].endswith("...")
    text = validation_markdown({"success": False, "checks": checks})
    assert text.startswith("# Data validation FAILED: training will not run\n")
    assert "| drift | warning | warning |" in text and "| a\\|b |" in text
    assert "**decodes**: 1 offending (first 1):\n\n- `b/x.png: zero-byte file`" in text


def test_importing_the_report_imports_neither_great_expectations_nor_pandas() -> None:
    code = (
        "import sys, tasks.validation.report; "
        "assert not {'great_expectations', 'pandas'} & set(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=60)
