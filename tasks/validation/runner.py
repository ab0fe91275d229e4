"""Validate a profile: measure it once, run the declared checks through Great Expectations and
assemble the report (with the class weights training applies in the warning band)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.params import ValidateParams
from tasks.validation.checks import CHECKS, check_severities, results
from tasks.validation.facts import Facts, gather_facts
from tasks.validation.gx_suite import run_checks
from tasks.validation.report import CheckResult, ValidationReport, write_source_page
from tasks.validation.stats import compute_class_weights

if TYPE_CHECKING:
    import pandas as pd


def validate_profile(
    profile: pd.DataFrame,
    class_names: list[str],
    image_shape: Sequence[int],
    params: ValidateParams,
    accepted: dict[str, Any] | None = None,
    data_docs_dir: Path | None = None,
) -> ValidationReport:
    """Run every check over the profile table and return the report (never raises on a
    failed check: inspect ``report.success`` and ``report.warnings``).

    Class distribution checks and class weights use the training split (the one the model
    learns from); ``accepted`` is the last accepted data version's summary (drift, and the
    expected class distribution when params say so). Raises ValidationError for input that
    cannot be validated at all and ParamsError when `validate.severity` does not name the checks.
    """
    check_severities(params)
    facts = gather_facts(profile, class_names, image_shape, params, accepted)
    passed = run_checks(params, facts, data_docs_dir)
    report = assemble_report(results(passed, params, facts), facts)
    if data_docs_dir is not None:
        write_source_page(report.figures, data_docs_dir)
    return report


def assemble_report(checks: list[CheckResult], facts: Facts) -> ValidationReport:
    """The report of these check results: class counts, figures, and class weights, applied
    when a banded check (imbalance, class KL) failed."""
    banded = {check.name for check in CHECKS if check.band is not None}
    band_failed = any(c.name in banded and not c.success for c in checks)
    try:
        weights: dict[str, float] | None = compute_class_weights(
            dict(enumerate(facts.train_counts))
        )
    except ValueError:
        weights = None
    return ValidationReport(
        checks=checks,
        class_counts={str(i): int(c) for i, c in enumerate(facts.train_counts)},
        kl_divergence=facts.class_kl if math.isfinite(facts.class_kl) else None,
        imbalance_ratio=facts.imbalance if math.isfinite(facts.imbalance) else None,
        class_weights=weights,
        apply_class_weights=band_failed and weights is not None,
        figures={
            "images": len(facts.images),
            "usable_images": facts.usable_images,
            "expected_distribution": facts.expected_source,
            "split_kl": facts.split_kl,
            "drift": facts.drift,
            "source_sizes": facts.source_sizes,
            "source_modes": facts.source_modes,
        },
    )
