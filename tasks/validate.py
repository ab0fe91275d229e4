"""Data validation stage: check the per-image profile with Great Expectations before training.

The prepare step decodes every image once and writes ``artifacts/prepared/profile.parquet``
(one row per file: decode error, shape, pixel statistics, sha256, difference hash, split). This
step derives per-image flags (blank, duplicate, leaked across splits) and per-class and
per-dataset figures from it, runs the checks declared in ``tasks/validation/checks.py`` as Great
Expectations suites, and writes:

- ``metrics/validation.json``: the compact summary DVC tracks as metrics (`success`, every
  check with its severity, observed value, threshold and first offending files, `warnings`,
  `class_weights` and `apply_class_weights`, which tasks/train.py reads);
- ``reports/validation/``: the Great Expectations Data Docs site (HTML);
- ``artifacts/accepted_data.json`` (only when no error-severity check failed): the summary of
  this data version (class distribution, binned pixel mean/std histograms) that the next run's
  drift checks and, with ``expected_distribution: accepted``, its class check compare against.

Each check has a severity in params.yaml: `error` stops the pipeline (exit status 1), `warning`
is reported and the run continues. The class-imbalance checks have two thresholds: between the
warning and the error threshold training applies class weights computed from the observed
counts; above the error threshold the run stops. Run by DVC as ``python -m tasks.validate``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tasks.params import ParamsError, ValidateParams, load_section
from tasks.paths import (
    ACCEPTED_SUMMARY,
    DATA_DOCS_DIR,
    PARAMS_FILE,
    PREPARED_META_FILE,
    PROFILE_FILE,
    VALIDATION_METRICS,
)
from tasks.profile import read_profile
from tasks.validation.checks import check_severities
from tasks.validation.drift import load_accepted, summarise, write_accepted
from tasks.validation.report import (
    ValidationError,
    ValidationReport,
    structural_report,
    validation_markdown,
    write_report,
)
from tasks.validation.runner import validate_profile

__all__ = [
    "ACCEPTED_SUMMARY",
    "ValidationError",
    "load_class_names",
    "main",
    "run_validation",
    "validation_markdown",
]


def load_class_names(path: Path) -> tuple[list[str], list[int]]:
    """Declared class names and image shape from meta.json."""
    if not path.is_file():
        raise ValidationError(f"{path} not found: run the prepare stage first (dvc repro prepare)")
    meta = json.loads(path.read_text(encoding="utf-8"))
    names = meta.get("class_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or not names:
        raise ValidationError(f"{path} must declare a non-empty 'class_names' list")
    shape = meta.get("image_shape")
    if not isinstance(shape, list) or len(shape) != 3:
        raise ValidationError(f"{path} must declare 'image_shape' as [height, width, channels]")
    return [str(name) for name in names], [int(v) for v in shape]


def _under(root: Path, path: Path | str) -> Path:
    """``path`` resolved against ``root`` when relative."""
    path = Path(path)
    return path if path.is_absolute() else root / path


def run_validation(
    root: Path = Path("."),
    params_path: Path | str = PARAMS_FILE,
    data_docs_dir: Path | None = DATA_DOCS_DIR,
) -> ValidationReport:
    """Validate the profile under ``root``; always write the report, record the data version
    as accepted when no error check failed, then raise ValidationError if one did.

    Relative ``params_path`` and ``data_docs_dir`` are resolved against ``root``.
    """
    root = Path(root)
    params = check_severities(load_section(ValidateParams, "validate", _under(root, params_path)))
    docs_dir = None if data_docs_dir is None else _under(root, data_docs_dir)
    report_path = root / VALIDATION_METRICS
    try:
        class_names, shape = load_class_names(root / PREPARED_META_FILE)
        try:
            profile = read_profile(root / PROFILE_FILE)
        except FileNotFoundError as error:
            raise ValidationError(str(error)) from None
        accepted = load_accepted(root / ACCEPTED_SUMMARY)
        report = validate_profile(profile, class_names, shape, params, accepted, docs_dir)
    except ValidationError as error:
        write_report(structural_report(str(error)), report_path)
        raise
    write_report(report, report_path)
    if not report.success:
        raise ValidationError.from_report(report)
    summary = summarise(profile, class_names, (params.pixel_min, params.pixel_max))
    write_accepted(root / ACCEPTED_SUMMARY, summary)
    return report


def _print_summary(report: ValidationReport) -> None:
    """Warnings on stderr, one verdict line on stdout."""
    for check in report.warnings:
        print(f"warning: {check.describe()}", file=sys.stderr)
    weights = " -> training applies class weights" if report.apply_class_weights else ""
    kl = "n/a" if report.kl_divergence is None else f"{report.kl_divergence:.4f}"
    ratio = "n/a" if report.imbalance_ratio is None else f"{report.imbalance_ratio:.2f}"
    print(
        f"Data validation passed: {len(report.checks)} checks, {len(report.warnings)} warning(s), "
        f"{sum(report.class_counts.values())} training images, imbalance {ratio}, "
        f"class KL {kl}{weights} -> {VALIDATION_METRICS}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI for ``python -m tasks.validate``: 0 when no error check failed, 1 otherwise."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root")
    parser.add_argument("--params", type=Path, default=PARAMS_FILE, help="params file")
    parser.add_argument(
        "--no-data-docs", action="store_true", help=f"skip the HTML site in {DATA_DOCS_DIR}"
    )
    args = parser.parse_args(argv)
    try:
        report = run_validation(
            args.root, args.params, None if args.no_data_docs else DATA_DOCS_DIR
        )
    except ValidationError as error:
        print(f"Data validation failed — training will not run:\n{error}", file=sys.stderr)
        return 1
    except ParamsError as error:
        print(f"Data validation could not start: {error}", file=sys.stderr)
        return 1
    _print_summary(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
