"""Validate stage: severities, class-imbalance bands -> class weights, drift, reports, CLI."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tasks.ingest import ingest
from tasks.params import ParamsError
from tasks.paths import DATA_DOCS_DIR, PREPARED_META_FILE, SPLITS_FILE, VALIDATION_METRICS
from tasks.prepare import prepare
from tasks.profile import read_profile
from tasks.validate import (
    ACCEPTED_SUMMARY,
    PROFILE_FILE,
    ValidationError,
    compute_class_weights,
    kl_divergence,
    kl_divergence_from_uniform,
    main,
    run_validation,
    validate_profile,
    validation_markdown,
)
from tests.conftest import MNIST_DIR
from tests.tasks.test_bad_input import noise, png_bytes, tree_digest, write_source

REPO_ROOT = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())


def make_repo(tmp_path: Path, counts: dict[str, int], params: dict | None = None) -> Path:
    root = tmp_path / "repo"
    ingest("folder", write_source(tmp_path / "src", counts), root / "data")
    (root / "params.yaml").write_text(yaml.safe_dump(params or PARAMS))
    params_now = yaml.safe_load((root / "params.yaml").read_text())
    prepare(root / "data", root / SPLITS_FILE, root / PREPARED_META_FILE, params_now["prepare"], 42)
    return root


def check(report: dict, name: str) -> dict:
    return next(c for c in report["checks"] if c["name"] == name)


def test_balanced_data_passes_writes_docs_summary_and_accepted_version(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"a": 30, "b": 30, "c": 30})
    report = run_validation(root)
    assert report.success and not report.apply_class_weights
    data = json.loads((root / VALIDATION_METRICS).read_text())
    assert data["success"] is True and data["failed_checks"] == [] and data["warnings"] == []
    assert data["class_counts"] == {"0": 24, "1": 24, "2": 24}
    assert data["class_weights"] == {"0": 1.0, "1": 1.0, "2": 1.0}
    assert data["apply_class_weights"] is False
    assert {c["name"] for c in data["checks"]} >= {"decodes", "exact_leakage", "drift"}
    assert all(
        {"name", "success", "observed", "expected", "severity"} <= c.keys() for c in data["checks"]
    )
    assert (root / DATA_DOCS_DIR / "index.html").is_file()
    accepted = json.loads((root / ACCEPTED_SUMMARY).read_text())
    assert accepted["class_counts"] == [30, 30, 30] and accepted["images"] == 90
    assert check(data, "drift")["observed"] == "no accepted data version yet"
    # Second run against the accepted version: no drift.
    again = run_validation(root, data_docs_dir=None)
    assert again.figures["drift"]["class_kl"] == pytest.approx(0.0, abs=1e-9)


def test_imbalance_in_warning_band_applies_class_weights(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"a": 60, "b": 30, "c": 30})
    report = run_validation(root, data_docs_dir=None)
    assert report.success  # warnings only: the run continues
    assert report.apply_class_weights
    assert report.imbalance_ratio == 2.0
    data = json.loads((root / VALIDATION_METRICS).read_text())
    assert data["apply_class_weights"] is True
    assert data["class_weights"] == pytest.approx({"0": 96 / 144, "1": 96 / 72, "2": 96 / 72})
    assert check(data, "imbalance_ratio")["severity"] == "warning"
    assert any(w.startswith("imbalance_ratio [warning]: observed 2.0") for w in data["warnings"])


def test_imbalance_above_error_threshold_stops_with_figures(tmp_path: Path, capsys) -> None:
    params = yaml.safe_load(yaml.safe_dump(PARAMS))
    params["validate"]["imbalance_ratio"]["error"] = 1.8
    root = make_repo(tmp_path, {"a": 60, "b": 30, "c": 30}, params)
    assert main(["--root", str(root), "--no-data-docs"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Data validation failed — training will not run:\n")
    assert "imbalance_ratio [error]: observed 2.0" in err and "<= 1.8 (error" in err
    data = json.loads((root / VALIDATION_METRICS).read_text())
    assert data["success"] is False and data["failed_checks"] == ["imbalance_ratio"]
    assert not (root / ACCEPTED_SUMMARY).exists()  # a failed version is never accepted


def test_drift_against_accepted_version_is_a_warning_with_figures(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"a": 30, "b": 30, "c": 30})
    run_validation(root, data_docs_dir=None)
    for index in range(40):  # brighter images in class a: pixel-mean distribution moves
        (root / "data" / "a" / f"bright{index}.png").write_bytes(
            png_bytes(np.full((8, 8), 250, np.uint8) - (noise(500 + index) % 8))
        )
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["validate"]["imbalance_ratio"]["error"] = 10.0
    prepare(root / "data", root / SPLITS_FILE, root / PREPARED_META_FILE, params["prepare"], 42)
    report = run_validation(root, data_docs_dir=None)
    drift = next(c for c in report.checks if c.name == "drift")
    assert not drift.success and drift.severity == "warning"
    assert drift.observed["pixel_mean_kl"] > 0.1 and drift.observed["class_kl"] > 0.0
    assert report.success  # drift warns, it does not stop


def test_expected_distribution_accepted_compares_with_last_version(tmp_path: Path) -> None:
    params = yaml.safe_load(yaml.safe_dump(PARAMS))
    params["validate"]["expected_distribution"] = "accepted"
    root = make_repo(tmp_path, {"a": 60, "b": 30, "c": 30}, params)
    first = run_validation(root, data_docs_dir=None)
    assert first.figures["expected_distribution"] == "uniform"  # nothing accepted yet
    second = run_validation(root, data_docs_dir=None)
    assert second.figures["expected_distribution"] == "accepted"
    assert second.kl_divergence == pytest.approx(0.0, abs=1e-6)


def test_markdown_lists_failures_thresholds_and_files(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"a": 30, "b": 30, "c": 30})
    (root / "data" / "b" / "broken.png").write_bytes(b"")
    prepare(root / "data", root / SPLITS_FILE, root / PREPARED_META_FILE, PARAMS["prepare"], 42)
    with pytest.raises(ValidationError) as caught:
        run_validation(root, data_docs_dir=None)
    text = validation_markdown(caught.value.report)
    assert text.startswith("# Data validation FAILED")
    assert "| decodes | error | FAILED | 1 |" in text
    assert "- `b/broken.png: zero-byte file`" in text
    # The JSON summary gives the same markdown (what the flow reads back).
    assert validation_markdown(json.loads((root / VALIDATION_METRICS).read_text())) == text


def test_report_json_is_byte_identical_across_runs(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"a": 30, "b": 20, "c": 30})
    outputs = []
    for _ in range(2):
        (root / ACCEPTED_SUMMARY).unlink(missing_ok=True)
        run_validation(root, data_docs_dir=None)
        outputs.append((root / VALIDATION_METRICS).read_bytes())
    assert outputs[0] == outputs[1]


def test_bad_params_name_the_key(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {"a": 30, "b": 30})
    profile = read_profile(root / PROFILE_FILE)
    for mutate, key in (
        (lambda v: v.pop("drift_kl_max"), r"validate\.drift_kl_max"),
        (lambda v: v["class_kl"].update(warning=1.0), r"validate\.class_kl\.warning"),
        (lambda v: v["severity"].update(decodes="fatal"), r"validate\.severity\.decodes"),
        (lambda v: v.update(expected_distribution="zipf"), r"expected_distribution"),
    ):
        params = yaml.safe_load(yaml.safe_dump(PARAMS["validate"]))
        mutate(params)
        with pytest.raises(ParamsError, match=key):
            validate_profile(profile, ["a", "b"], [8, 8, 1], params)


def test_missing_inputs_still_write_a_report(tmp_path: Path, capsys) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    assert main(["--root", str(tmp_path)]) == 1
    assert "run the prepare stage first" in capsys.readouterr().err
    report = json.loads((tmp_path / VALIDATION_METRICS).read_text())
    assert report["failed_checks"] == ["input"] and report["success"] is False


def test_kl_and_class_weights() -> None:
    assert kl_divergence_from_uniform([10, 10]) == 0.0
    assert kl_divergence([1, 0], [1, 1]) == pytest.approx(math.log(2))
    assert math.isinf(kl_divergence([1, 1], [1, 0]))
    weights = compute_class_weights({0: 10, 1: 20, 2: 70})
    assert weights == pytest.approx({"0": 100 / 30, "1": 100 / 60, "2": 100 / 210})
    with pytest.raises(ValueError, match="without images"):
        compute_class_weights({0: 5, 1: 0})


def test_importing_the_module_does_not_import_great_expectations() -> None:
    code = "import sys, tasks.validate; assert 'great_expectations' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=60)


@pytest.mark.slow
@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"{MNIST_DIR} not present (shared dataset)")
def test_mnist_passes_and_a_class_cut_to_a_twentieth_triggers_weights_or_stop(tmp_path) -> None:
    root = tmp_path / "repo"
    ingest("idx", MNIST_DIR, root / "data")
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    prepare(root / "data", root / SPLITS_FILE, root / PREPARED_META_FILE, PARAMS["prepare"], 42)
    real = run_validation(root, data_docs_dir=None)
    assert real.success and not real.apply_class_weights, [c.describe() for c in real.failures]
    assert real.imbalance_ratio < PARAMS["validate"]["imbalance_ratio"]["warning"]

    files = sorted((root / "data" / "5").glob("*.png"))
    for file in files[len(files) // 20 :]:  # keep 1/20 of class 5
        file.unlink()
    before = tree_digest(root / "data")
    prepare(root / "data", root / SPLITS_FILE, root / PREPARED_META_FILE, PARAMS["prepare"], 42)
    cut = run_validation(root, data_docs_dir=None)
    assert cut.success and cut.apply_class_weights  # ratio ~25: warning band -> class weights
    assert cut.class_weights["5"] > 5 * cut.class_weights["1"]
    data = json.loads((root / VALIDATION_METRICS).read_text())
    assert data["apply_class_weights"] is True

    params = yaml.safe_load(yaml.safe_dump(PARAMS))
    params["validate"]["imbalance_ratio"]["error"] = 20.0  # a stricter gate stops the same data
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ValidationError, match=r"imbalance_ratio \[error\]"):
        run_validation(root, data_docs_dir=None)
    assert tree_digest(root / "data") == before
    shutil.rmtree(root / "data")
