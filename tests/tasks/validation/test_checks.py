"""The check declarations: each declared check gets GX expectations and exactly one report row,
its severity comes from params (or its band), and its observation reads the facts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tasks.params import ParamsError, ValidateParams, parse_section
from tasks.paths import VALIDATION_METRICS
from tasks.validate import run_validation
from tasks.validation.checks import (
    CHECKS,
    TABLES,
    Level,
    Observation,
    check_severities,
    severity_keys,
)
from tasks.validation.facts import Facts, gather_facts
from tasks.validation.gx_suite import build_expectations
from tasks.validation.report import validation_rows

NAMES = [check.name for check in CHECKS]
BANDED = {"imbalance_ratio", "class_kl"}


def test_checks_are_declared_once_in_report_order() -> None:
    assert len(set(NAMES)) == len(NAMES)
    assert NAMES[:3] == ["decodes", "image_shape", "pixel_range"] and NAMES[-1] == "drift"
    assert {c.name for c in CHECKS if c.band is not None} == BANDED
    assert set(severity_keys()) == set(NAMES) - BANDED


def test_every_declared_check_is_in_the_gx_suites_and_is_one_report_row(
    folder_repo: Callable[..., Path],
    validate_params: ValidateParams,
    make_profile: Callable[..., pd.DataFrame],
) -> None:
    facts = gather_facts(make_profile(12), ["a"], [8, 8, 1], validate_params, None)
    in_suites: list[tuple[str, str | None]] = []
    for table in TABLES:
        for expectation in build_expectations(table, validate_params, facts):
            in_suites.append((expectation.meta["check"], expectation.meta.get("level")))
    assert {name for name, _ in in_suites} == set(NAMES)
    for name in BANDED:  # a banded check is decided by both of its thresholds
        assert {level for check, level in in_suites if check == name} == {"error", "warning"}

    root = folder_repo({"a": 20, "b": 20})
    run_validation(root, data_docs_dir=None)
    written = json.loads((root / VALIDATION_METRICS).read_text())
    assert [row[0] for row in validation_rows(written["checks"])] == NAMES


def test_severity_must_name_exactly_the_declared_checks(params_data: dict[str, Any]) -> None:
    severity = params_data["validate"]["severity"]
    severity["class_balance"] = "error"  # no such check
    del severity["drift"]
    params = parse_section(ValidateParams, params_data["validate"], "validate")
    with pytest.raises(ParamsError) as caught:
        check_severities(params)
    message = str(caught.value)
    assert "params.yaml: validate.severity.class_balance is not a known check; allowed: " in message
    assert (
        "params.yaml: validate.severity.drift is missing; allowed: decodes, image_shape" in message
    )
    assert "imbalance_ratio" not in message  # banded checks take no severity


def test_a_bad_severity_value_names_its_key(params_data: dict[str, Any]) -> None:
    params_data["validate"]["severity"]["decodes"] = "fatal"
    with pytest.raises(ParamsError, match=r"validate\.severity\.decodes: Input should be"):
        parse_section(ValidateParams, params_data["validate"], "validate")


@pytest.mark.parametrize(
    ("below_error", "below_warning", "success", "severity"),
    [(True, True, True, "error"), (True, False, False, "warning"), (False, False, False, "error")],
)
def test_a_banded_check_warns_between_its_thresholds_and_stops_above(
    validate_params: ValidateParams,
    make_profile: Callable[..., pd.DataFrame],
    below_error: bool,
    below_warning: bool,
    success: bool,
    severity: str,
) -> None:
    facts = gather_facts(make_profile(4), ["a"], [8, 8, 1], validate_params, None)
    check = next(c for c in CHECKS if c.name == "imbalance_ratio")
    passed: dict[tuple[str, Level], bool] = {
        ("imbalance_ratio", "error"): below_error,
        ("imbalance_ratio", "warning"): below_warning,
    }
    result = check.result(passed, validate_params, facts)
    assert (result.success, result.severity) == (success, severity)
    assert result.expected == (
        "largest / smallest training class count <= 1.5 (warning: class weights above), "
        "<= 50.0 (error: stop above)"
    )


def test_a_check_without_an_outcome_fails_with_its_params_severity(
    validate_params: ValidateParams, make_profile: Callable[..., pd.DataFrame]
) -> None:
    facts = gather_facts(make_profile(4), ["a"], [8, 8, 1], validate_params, None)
    blank = next(c for c in CHECKS if c.name == "blank_images")
    assert blank.result({}, validate_params, facts).success is False
    assert blank.result({("blank_images", None): True}, validate_params, facts).severity == (
        "warning"
    )


def observe(name: str, facts: Facts, params: ValidateParams) -> Observation:
    return next(c for c in CHECKS if c.name == name).observe(facts, params)


def test_observations_quote_the_offending_files(
    validate_params: ValidateParams, make_profile: Callable[..., pd.DataFrame]
) -> None:
    profile = make_profile(
        6,
        {
            0: {"error": "zero-byte file", "split": "excluded", "pixel_min": None,
                "pixel_max": None, "height": None, "width": None, "channels": None},
            1: {"height": 9},
            2: {"pixel_max": 300.0},
            3: {"pixel_min": 7.0, "pixel_max": 7.0},
            4: {"label_name": "zebra", "split": "excluded"},
        },
    )  # fmt: skip
    facts = gather_facts(profile, ["a"], [8, 8, 1], validate_params, None)
    decodes = observe("decodes", facts, validate_params)
    assert decodes == Observation(1, ["a/000.png: zero-byte file"], 1)
    shape = observe("image_shape", facts, validate_params)
    assert shape == Observation({"8x8x1": 4, "9x8x1": 1}, ["a/001.png"], 1)
    pixels = observe("pixel_range", facts, validate_params)
    assert pixels == Observation({"min": 0.0, "max": 300.0}, ["a/002.png"], 1)
    blank = observe("blank_images", facts, validate_params)
    assert blank == Observation(1 / 6, ["a/003.png"], 1)
    assert observe("label_set", facts, validate_params) == Observation(["zebra"], ["a/004.png"], 1)
    present = observe("classes_present", facts, validate_params)
    assert present.observed == {"classes": 1, "missing": []}
    per_class = observe("min_images_per_class", facts, validate_params)
    assert per_class.observed == {"a": 4}  # below params' 10 training images


def test_infinite_band_figures_are_reported_as_text(
    validate_params: ValidateParams, make_profile: Callable[..., pd.DataFrame]
) -> None:
    facts = gather_facts(make_profile(4), ["a", "b"], [8, 8, 1], validate_params, None)
    assert observe("imbalance_ratio", facts, validate_params).observed == (
        "infinite (a class is empty)"
    )
    assert observe("classes_present", facts, validate_params).observed == {
        "classes": 2,
        "missing": ["b"],
    }
