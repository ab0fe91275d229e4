"""Validate stage (`python -m tasks.validate`): severities, class-imbalance bands -> class
weights, drift against the accepted version, reports, CLI, structural input errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tasks.ingest import ingest
from tasks.params import ParamsError, PrepareParams
from tasks.paths import (
    ACCEPTED_SUMMARY,
    DATA_DOCS_DIR,
    PREPARED_META_FILE,
    SPLITS_FILE,
    VALIDATION_METRICS,
)
from tasks.prepare import prepare
from tasks.validate import ValidationError, main, run_validation, validation_markdown

REPO_ROOT = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
PREPARE = PrepareParams(**PARAMS["prepare"])

MakeRepo = Callable[..., Path]


def reprepare(root: Path) -> None:
    prepare(root / "data", root / SPLITS_FILE, root / PREPARED_META_FILE, PREPARE, 42)


@pytest.fixture
def make_repo(tmp_path: Path, image_files: Any) -> MakeRepo:
    """make_repo(counts, params=None): a prepared repository of random PNGs per class."""

    def make(counts: dict[str, int], params: dict | None = None) -> Path:
        root = tmp_path / "repo"
        ingest("folder", image_files.write_source(tmp_path / "src", counts), root / "data")
        (root / "params.yaml").write_text(yaml.safe_dump(params or PARAMS))
        reprepare(root)
        return root

    return make


def with_validate(**changes: object) -> dict:
    params = yaml.safe_load(yaml.safe_dump(PARAMS))
    params["validate"].update(changes)
    return params


def check(report: dict, name: str) -> dict:
    return next(c for c in report["checks"] if c["name"] == name)


def test_balanced_data_passes_writes_docs_summary_and_accepted_version(make_repo: MakeRepo) -> None:
    root = make_repo({"a": 30, "b": 30, "c": 30})
    report = run_validation(root)
    assert report.success and not report.apply_class_weights
    data = json.loads((root / VALIDATION_METRICS).read_text())
    assert data["success"] is True and data["failed_checks"] == [] and data["warnings"] == []
    assert data["class_counts"] == {"0": 24, "1": 24, "2": 24}
    assert data["class_weights"] == {"0": 1.0, "1": 1.0, "2": 1.0}
    assert data["apply_class_weights"] is False
    assert data["images"] == 90 and data["usable_images"] == 90
    assert (root / DATA_DOCS_DIR / "index.html").is_file()
    accepted = json.loads((root / ACCEPTED_SUMMARY).read_text())
    assert accepted["class_counts"] == [30, 30, 30] and accepted["images"] == 90
    assert check(data, "drift")["observed"] == "no accepted data version yet"
    # Second run against the accepted version: the same data has no drift at all.
    again = run_validation(root, data_docs_dir=None)
    assert again.figures["drift"] == {"class_kl": 0.0, "pixel_mean_kl": 0.0, "pixel_std_kl": 0.0}


def test_imbalance_in_warning_band_applies_class_weights(make_repo: MakeRepo) -> None:
    root = make_repo({"a": 60, "b": 30, "c": 30})
    report = run_validation(root, data_docs_dir=None)
    assert report.success  # warnings only: the run continues
    assert report.apply_class_weights
    assert report.imbalance_ratio == 2.0
    data = json.loads((root / VALIDATION_METRICS).read_text())
    assert data["apply_class_weights"] is True
    assert data["class_weights"] == pytest.approx({"0": 96 / 144, "1": 96 / 72, "2": 96 / 72})
    assert check(data, "imbalance_ratio")["severity"] == "warning"
    assert any(w.startswith("imbalance_ratio [warning]: observed 2.0") for w in data["warnings"])


def test_imbalance_above_error_threshold_stops_with_figures(
    make_repo: MakeRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_repo(
        {"a": 60, "b": 30, "c": 30},
        with_validate(imbalance_ratio={"warning": 1.5, "error": 1.8}),
    )
    assert main(["--root", str(root), "--no-data-docs"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Data validation failed — training will not run:\n")
    assert "imbalance_ratio [error]: observed 2.0" in err and "<= 1.8 (error" in err
    data = json.loads((root / VALIDATION_METRICS).read_text())
    assert data["success"] is False and data["failed_checks"] == ["imbalance_ratio"]
    assert not (root / ACCEPTED_SUMMARY).exists()  # a failed version is never accepted


def test_drift_against_accepted_version_is_a_warning_with_figures(
    make_repo: MakeRepo, image_files: Any
) -> None:
    root = make_repo({"a": 30, "b": 30, "c": 30})
    run_validation(root, data_docs_dir=None)
    for index in range(40):  # brighter images in class a: pixel-mean distribution moves
        bright = np.full((8, 8), 250, np.uint8) - (image_files.noise(500 + index) % 8)
        (root / "data" / "a" / f"bright{index}.png").write_bytes(image_files.encode(bright))
    params = with_validate(imbalance_ratio={"warning": 1.5, "error": 10.0})
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    reprepare(root)
    report = run_validation(root, data_docs_dir=None)
    drift = next(c for c in report.checks if c.name == "drift")
    assert not drift.success and drift.severity == "warning"
    assert drift.observed["pixel_mean_kl"] > 0.1 and drift.observed["class_kl"] > 0.0
    assert report.success  # drift warns, it does not stop


def test_expected_distribution_accepted_compares_with_last_version(make_repo: MakeRepo) -> None:
    root = make_repo({"a": 60, "b": 30, "c": 30}, with_validate(expected_distribution="accepted"))
    first = run_validation(root, data_docs_dir=None)
    assert first.figures["expected_distribution"] == "uniform"  # nothing accepted yet
    assert first.kl_divergence is not None and first.kl_divergence > 0.01  # 2:1:1 vs uniform
    second = run_validation(root, data_docs_dir=None)
    assert second.figures["expected_distribution"] == "accepted"
    assert second.kl_divergence == pytest.approx(0.0, abs=1e-6)


def test_markdown_lists_failures_thresholds_and_files(make_repo: MakeRepo) -> None:
    root = make_repo({"a": 30, "b": 30, "c": 30})
    (root / "data" / "b" / "broken.png").write_bytes(b"")
    reprepare(root)
    with pytest.raises(ValidationError) as caught:
        run_validation(root, data_docs_dir=None)
    assert caught.value.report is not None
    text = validation_markdown(caught.value.report)
    assert text.startswith("# Data validation FAILED")
    assert "| decodes | error | FAILED | 1 |" in text
    assert "- `b/broken.png: zero-byte file`" in text
    # The JSON summary gives the same markdown (what the flow reads back).
    assert validation_markdown(json.loads((root / VALIDATION_METRICS).read_text())) == text


def test_report_json_is_byte_identical_across_runs(make_repo: MakeRepo) -> None:
    root = make_repo({"a": 30, "b": 20, "c": 30})
    outputs = []
    for _ in range(2):
        (root / ACCEPTED_SUMMARY).unlink(missing_ok=True)
        run_validation(root, data_docs_dir=None)
        outputs.append((root / VALIDATION_METRICS).read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0].endswith(b"}\n") and b'\n  "apply_class_weights": ' in outputs[0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"drift_kl_max": None}, r"validate\.drift_kl_max"),
        ({"class_kl": {"warning": 1.0, "error": 0.5}}, r"validate\.class_kl: warning"),
        ({"expected_distribution": "zipf"}, r"validate\.expected_distribution"),
        ({"max_blank_shares": 0.1}, r"validate\.max_blank_shares is not a known key"),
    ],
)
def test_bad_params_stop_before_any_work_naming_the_key(
    make_repo: MakeRepo, capsys: pytest.CaptureFixture[str], change: dict, message: str
) -> None:
    root = make_repo({"a": 30, "b": 30})
    params = with_validate(**change)
    if change.get("drift_kl_max", 0) is None:
        del params["validate"]["drift_kl_max"]
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=message):
        run_validation(root, data_docs_dir=None)
    assert not (root / VALIDATION_METRICS).exists()  # nothing measured, nothing written
    assert main(["--root", str(root), "--no-data-docs"]) == 1
    assert capsys.readouterr().err.startswith("Data validation could not start: params.yaml: ")


def test_missing_inputs_still_write_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    assert main(["--root", str(tmp_path)]) == 1
    assert "run the prepare stage first" in capsys.readouterr().err
    report = json.loads((tmp_path / VALIDATION_METRICS).read_text())
    assert report["failed_checks"] == ["input"] and report["success"] is False


def test_importing_the_stage_does_not_import_great_expectations() -> None:
    code = "import sys, tasks.validate; assert 'great_expectations' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=60)


@pytest.mark.slow
def test_mnist_passes_and_a_class_cut_to_a_twentieth_triggers_weights_or_stop(
    tmp_path: Path, mnist_dir: Path, tree_digest: Callable[[Path], str]
) -> None:
    root = tmp_path / "repo"
    ingest("idx", mnist_dir, root / "data")
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    reprepare(root)
    real = run_validation(root, data_docs_dir=None)
    assert real.success and not real.apply_class_weights, [c.describe() for c in real.failures]
    assert real.imbalance_ratio < PARAMS["validate"]["imbalance_ratio"]["warning"]

    files = sorted((root / "data" / "5").glob("*.png"))
    for file in files[len(files) // 20 :]:  # keep 1/20 of class 5
        file.unlink()
    before = tree_digest(root / "data")
    reprepare(root)
    cut = run_validation(root, data_docs_dir=None)
    assert cut.success and cut.apply_class_weights  # ratio ~25: warning band -> class weights
    assert cut.class_weights is not None and cut.class_weights["5"] > 5 * cut.class_weights["1"]
    data = json.loads((root / VALIDATION_METRICS).read_text())
    assert data["apply_class_weights"] is True

    params = with_validate(imbalance_ratio={"warning": 1.5, "error": 20.0})
    (root / "params.yaml").write_text(yaml.safe_dump(params))  # a stricter gate stops it
    with pytest.raises(ValidationError, match=r"imbalance_ratio \[error\]"):
        run_validation(root, data_docs_dir=None)
    assert tree_digest(root / "data") == before
