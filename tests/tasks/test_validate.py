"""Tests for the data-validation stage (tasks/validate.py) on tiny synthetic image splits."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tasks.params import ParamsError
from tasks.paths import PREPARED_META_FILE, SPLITS_FILE, VALIDATION_METRICS
from tasks.validate import (
    CHECK_CLASS_BALANCE,
    CHECK_CLASSES_PRESENT,
    CHECK_IMAGE_SHAPE,
    CHECK_INPUT,
    CHECK_LABELS_IN_SET,
    CHECK_MIN_PER_CLASS,
    CHECK_PIXEL_RANGE,
    CheckResult,
    ValidationError,
    ValidationReport,
    build_image_table,
    compute_class_weights,
    kl_divergence_from_uniform,
    main,
    run_validation,
    validate_dataset,
    write_report,
)

CLASS_NAMES = ["a", "b", "c"]
PARAMS = {"pixel_min": 0, "pixel_max": 255, "min_images_per_class": 10, "kl_divergence_max": 0.05}
ALL_CHECKS = [
    CHECK_LABELS_IN_SET,
    CHECK_CLASSES_PRESENT,
    CHECK_PIXEL_RANGE,
    CHECK_IMAGE_SHAPE,
    CHECK_MIN_PER_CLASS,
    CHECK_CLASS_BALANCE,
]


def make_split(counts: list[int], side: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, side, side, 1) uint8 in [0, 50] and int64 labels with counts[c] of class c."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    x = rng.integers(0, 51, size=(len(y), side, side, 1), dtype=np.uint8)
    return x, y


def make_dataset(
    train_counts: tuple[int, ...] = (12, 12, 12), other_counts: tuple[int, ...] = (3, 3, 3)
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    xs, ys = {}, {}
    for seed, (name, counts) in enumerate(
        [("train", train_counts), ("val", other_counts), ("test", other_counts)]
    ):
        xs[name], ys[name] = make_split(list(counts), seed=seed)
    return xs, ys


def check(report: ValidationReport, name: str) -> CheckResult:
    return next(c for c in report.checks if c.name == name)


def failed_names(report: ValidationReport) -> list[str]:
    return [c.name for c in report.failures]


def test_build_image_table_has_one_row_per_image_with_stats() -> None:
    x = np.zeros((3, 2, 5, 1), dtype=np.uint8)
    x[1] = 7
    x[2, 0, 0, 0] = 200
    table = build_image_table(x, np.array([0, 1, 2]), ["train", "train", "val"])
    assert list(table.columns) == [
        "label",
        "split",
        "height",
        "width",
        "channels",
        "pixel_min",
        "pixel_max",
        "pixel_mean",
    ]
    assert table["label"].tolist() == [0, 1, 2]
    assert table["split"].tolist() == ["train", "train", "val"]
    assert set(table["height"]) == {2} and set(table["width"]) == {5}
    assert set(table["channels"]) == {1}
    assert table["pixel_max"].tolist() == [0, 7, 200]
    assert table["pixel_mean"].tolist() == pytest.approx([0.0, 7.0, 20.0])


def test_balanced_valid_data_passes_every_check() -> None:
    xs, ys = make_dataset()
    report = validate_dataset(xs, ys, CLASS_NAMES, PARAMS)
    assert report.success, [c.describe() for c in report.failures]
    assert [c.name for c in report.checks] == ALL_CHECKS
    assert all(c.success for c in report.checks)
    assert report.failures == []
    assert report.class_counts == {"0": 12, "1": 12, "2": 12}
    assert report.kl_divergence == pytest.approx(0.0, abs=1e-12)
    assert report.imbalance_ratio == 1.0
    assert report.class_weights == {"0": 1.0, "1": 1.0, "2": 1.0}
    assert check(report, CHECK_PIXEL_RANGE).observed == {"min": 0, "max": 50}
    assert check(report, CHECK_IMAGE_SHAPE).observed == {
        "test": [4, 4, 1],
        "train": [4, 4, 1],
        "val": [4, 4, 1],
    }


def test_unknown_label_fails_and_names_the_label() -> None:
    xs, ys = make_dataset()
    ys["val"][0] = 7
    report = validate_dataset(xs, ys, CLASS_NAMES, PARAMS)
    assert not report.success
    assert failed_names(report) == [CHECK_LABELS_IN_SET]
    assert check(report, CHECK_LABELS_IN_SET).observed == [7]
    message = str(ValidationError.from_report(report))
    assert f"{CHECK_LABELS_IN_SET}: observed [7], expected labels in 0..2" in message


def test_unknown_label_in_train_makes_kl_infinite_and_fails_balance() -> None:
    xs, ys = make_dataset()
    ys["train"][0] = 9
    report = validate_dataset(xs, ys, CLASS_NAMES, PARAMS)
    assert CHECK_LABELS_IN_SET in failed_names(report)
    assert CHECK_CLASS_BALANCE in failed_names(report)
    assert report.kl_divergence is None
    assert report.class_counts["9"] == 1


def test_missing_class_fails_every_class_present() -> None:
    xs, ys = make_dataset(train_counts=(12, 12, 0), other_counts=(3, 3, 0))
    report = validate_dataset(xs, ys, CLASS_NAMES, PARAMS)
    assert not report.success
    present = check(report, CHECK_CLASSES_PRESENT)
    assert not present.success and present.observed == [2]
    assert not check(report, CHECK_MIN_PER_CLASS).success
    # KL(observed || uniform) of a missing class is finite (log(3/2)): GX's observed value is
    # only None for an *unexpected* label, so the balance check fails on the threshold here.
    balance = check(report, CHECK_CLASS_BALANCE)
    assert not balance.success
    assert report.kl_divergence == pytest.approx(math.log(3 / 2), abs=1e-9)
    assert report.imbalance_ratio is None  # max / 0
    assert report.class_weights is None  # undefined for an empty class
    assert report.class_counts["2"] == 0


def test_pixel_above_declared_max_fails() -> None:
    xs, ys = make_dataset()
    xs["test"][1, 0, 0, 0] = 200
    report = validate_dataset(xs, ys, CLASS_NAMES, {**PARAMS, "pixel_max": 100})
    assert failed_names(report) == [CHECK_PIXEL_RANGE]
    pixel = check(report, CHECK_PIXEL_RANGE)
    assert pixel.observed == {"min": 0, "max": 200}
    assert pixel.expected == "pixels within [0, 100]"


def test_pixel_below_declared_min_fails() -> None:
    xs, ys = make_dataset()
    report = validate_dataset(xs, ys, CLASS_NAMES, {**PARAMS, "pixel_min": 1})
    assert failed_names(report) == [CHECK_PIXEL_RANGE]


def test_split_with_different_image_shape_fails() -> None:
    xs, ys = make_dataset()
    xs["val"], ys["val"] = make_split([3, 3, 3], side=9)
    report = validate_dataset(xs, ys, CLASS_NAMES, PARAMS)
    assert failed_names(report) == [CHECK_IMAGE_SHAPE]
    assert check(report, CHECK_IMAGE_SHAPE).observed["val"] == [9, 9, 1]
    assert check(report, CHECK_IMAGE_SHAPE).observed["train"] == [4, 4, 1]


def test_heavy_imbalance_fails_class_balance_with_kl_in_message() -> None:
    xs, ys = make_dataset(train_counts=(1000, 10, 10))
    report = validate_dataset(xs, ys, CLASS_NAMES, PARAMS)
    assert failed_names(report) == [CHECK_CLASS_BALANCE]
    expected_kl = kl_divergence_from_uniform([1000, 10, 10])
    assert report.kl_divergence == pytest.approx(expected_kl, rel=1e-9)
    assert report.kl_divergence > 0.9
    assert report.imbalance_ratio == 100.0
    message = str(ValidationError.from_report(report))
    assert f"{CHECK_CLASS_BALANCE}: observed {report.kl_divergence!r}" in message
    assert "expected KL divergence <= 0.05" in message
    # weights are still reported so training can decide to use them
    assert report.class_weights == pytest.approx({"0": 0.34, "1": 34.0, "2": 34.0})


def test_too_few_images_per_class_fails() -> None:
    xs, ys = make_dataset(train_counts=(9, 11, 11))
    report = validate_dataset(xs, ys, CLASS_NAMES, PARAMS)
    assert failed_names(report) == [CHECK_MIN_PER_CLASS]
    minimum = check(report, CHECK_MIN_PER_CLASS)
    assert minimum.observed == {"0": 9}
    assert minimum.expected == ">= 10 images for every class"


@pytest.mark.parametrize(
    ("xs", "ys", "fragment"),
    [
        (
            {"train": np.zeros((0, 4, 4, 1), np.uint8)},
            {"train": np.zeros(0, np.int64)},
            "empty",
        ),
        ({}, {}, "empty"),
        (
            {"train": np.zeros((5, 4, 4, 1), np.uint8)},
            {"train": np.zeros(4, np.int64)},
            "5 images but 4 labels",
        ),
        (
            {"train": np.zeros((5, 4, 4), np.uint8)},
            {"train": np.zeros(5, np.int64)},
            "4-D",
        ),
        (
            {"train": np.zeros((5, 4, 4, 1), np.uint8)},
            {"val": np.zeros(5, np.int64)},
            "differ",
        ),
        (
            {"train": np.zeros((2, 4, 4, 1), np.uint8)},
            {"train": np.zeros((2, 3), np.int64)},
            "1-D",
        ),
    ],
)
def test_structurally_bad_input_raises_clear_validation_error(xs, ys, fragment) -> None:
    with pytest.raises(ValidationError, match=fragment) as caught:
        validate_dataset(xs, ys, CLASS_NAMES, PARAMS)
    assert caught.value.report is None


def test_missing_param_raises_params_error() -> None:
    xs, ys = make_dataset()
    params = {key: value for key, value in PARAMS.items() if key != "kl_divergence_max"}
    with pytest.raises(ParamsError, match=r"validate\.kl_divergence_max"):
        validate_dataset(xs, ys, CLASS_NAMES, params)


def test_error_message_lists_every_failure() -> None:
    xs, ys = make_dataset(train_counts=(1000, 9, 10))
    xs["val"], ys["val"] = make_split([3, 3, 3], side=9)
    report = validate_dataset(xs, ys, CLASS_NAMES, PARAMS)
    message = str(ValidationError.from_report(report))
    assert set(failed_names(report)) == {
        CHECK_IMAGE_SHAPE,
        CHECK_MIN_PER_CLASS,
        CHECK_CLASS_BALANCE,
    }
    for failure in report.failures:
        assert f"{failure.name}: observed " in message
    assert message.startswith("3 data check(s) failed:")


def test_report_json_is_byte_identical_across_runs(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "validation.json", tmp_path / "b" / "validation.json"
    xs, ys = make_dataset(train_counts=(30, 12, 11))
    write_report(validate_dataset(xs, ys, CLASS_NAMES, PARAMS), first)
    xs, ys = make_dataset(train_counts=(30, 12, 11))
    write_report(validate_dataset(xs, ys, CLASS_NAMES, PARAMS), second)
    assert first.read_bytes() == second.read_bytes()
    data = json.loads(first.read_text())
    assert list(data) == sorted(data)
    assert data["kl_divergence"] == round(data["kl_divergence"], 6)
    assert not list(first.parent.glob("*.tmp"))  # atomic write left no temp file


def test_class_weights_follow_balanced_formula() -> None:
    weights = compute_class_weights({0: 10, 1: 20, 2: 70})
    # n_total / (k * n_c) with n_total = 100, k = 3
    assert weights == pytest.approx({"0": 100 / 30, "1": 100 / 60, "2": 100 / 210})
    sklearn_utils = pytest.importorskip("sklearn.utils.class_weight")
    y = np.repeat([0, 1, 2], [10, 20, 70])
    expected = sklearn_utils.compute_class_weight("balanced", classes=np.arange(3), y=y)
    assert [weights[str(c)] for c in range(3)] == pytest.approx(expected.tolist())
    with pytest.raises(ValueError, match="without images"):
        compute_class_weights({0: 5, 1: 0})


def write_root(root: Path, train_counts: tuple[int, ...]) -> None:
    """A repository root with prepared splits, meta.json and params.yaml."""
    xs, ys = make_dataset(train_counts=train_counts)
    (root / SPLITS_FILE).parent.mkdir(parents=True)
    arrays = {f"{kind}_{name}": d[name] for kind, d in (("x", xs), ("y", ys)) for name in d}
    np.savez(root / SPLITS_FILE, **arrays)
    meta = {"name": "toy", "class_names": CLASS_NAMES, "image_shape": [4, 4, 1]}
    (root / PREPARED_META_FILE).write_text(json.dumps(meta))
    (root / "params.yaml").write_text(yaml.safe_dump({"seed": 1, "validate": PARAMS}))


def test_main_returns_1_and_writes_report_on_failure(tmp_path: Path, capsys) -> None:
    write_root(tmp_path, train_counts=(1000, 10, 10))
    assert main(["--root", str(tmp_path), "--no-data-docs"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Data validation failed — training will not run:\n")
    assert CHECK_CLASS_BALANCE in err
    report = json.loads((tmp_path / VALIDATION_METRICS).read_text())
    assert report["success"] is False
    assert report["failed_checks"] == [CHECK_CLASS_BALANCE]


def test_run_validation_passes_and_builds_data_docs(tmp_path: Path, capsys) -> None:
    write_root(tmp_path, train_counts=(12, 12, 12))
    report = run_validation(tmp_path, "params.yaml", data_docs_dir=Path("docs"))
    assert report.success
    assert (tmp_path / "docs" / "index.html").is_file()
    assert json.loads((tmp_path / VALIDATION_METRICS).read_text())["success"] is True
    assert main(["--root", str(tmp_path), "--no-data-docs"]) == 0
    assert capsys.readouterr().out.startswith("Data validation passed")


def test_missing_inputs_still_write_a_report(tmp_path: Path, capsys) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"validate": PARAMS}))
    assert main(["--root", str(tmp_path)]) == 1
    assert "run the prepare stage first" in capsys.readouterr().err
    report = json.loads((tmp_path / VALIDATION_METRICS).read_text())
    assert report["failed_checks"] == [CHECK_INPUT]


def test_importing_the_module_does_not_import_great_expectations() -> None:
    code = "import sys, tasks.validate; assert 'great_expectations' not in sys.modules"
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=60)
