"""Bad input, one test per case: a clear error naming the file, and nothing lost.

Two ways bad files reach the pipeline, both covered: through `ingest --source folder` (refused
with an IngestError listing every bad file; data/ stays exactly as it was), and by landing in
data/ directly (prepare records them in the profile instead of crashing, validation fails with
an error-severity check naming the files; data/ and the last accepted data version stay as
they were, so nothing downstream, training or registration, runs).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.ingest import IngestError, ingest, read_manifest
from tasks.params import PrepareParams
from tasks.paths import ACCEPTED_SUMMARY, PREPARED_META_FILE, SPLITS_FILE, VALIDATION_METRICS
from tasks.prepare import prepare
from tasks.validate import ValidationError, run_validation

REPO_ROOT = Path(__file__).resolve().parents[2]
CLASSES = ("a", "b", "c")
SIDE = 8

# `files` below is the image_files fixture (tests/conftest.py): encoded good and bad images.
MakeBad = Callable[[Path, Any], str]


def _write(folder: Path, name: str, data: bytes) -> str:
    (folder / name).write_bytes(data)
    return name


def escaping_symlink(folder: Path, files: Any) -> str:
    outside = folder.parents[2] / "outside.png"
    outside.write_bytes(files.encode(files.noise(7)))
    (folder / "link.png").symlink_to(outside)
    return "link.png"


# name -> (writes a bad file into a class folder, returns its name; fragment of the reason)
BAD_FILES: dict[str, tuple[MakeBad, str]] = {
    "corrupt png": (
        lambda d, files: _write(d, "bad.png", b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20),
        "cannot",
    ),
    "truncated jpeg": (lambda d, files: _write(d, "cut.jpg", files.truncated_jpeg()), "truncated"),
    "zero-byte file": (lambda d, files: _write(d, "empty.png", b""), "zero-byte"),
    "text file with image extension": (
        lambda d, files: _write(d, "notes.png", b"not an image\n"),
        "not an image",
    ),
    "decompression bomb": (
        lambda d, files: _write(d, "bomb.png", files.bomb_png()),
        "decompression bomb",
    ),
    "symlink escaping the data folder": (escaping_symlink, "outside"),
}
# name -> (shape of a valid image that differs from the dataset's 8x8 grayscale)
ODD_SHAPES: dict[str, tuple[int, ...]] = {
    "rgb among grayscale": (SIDE, SIDE, 3),
    "wrong size": (SIDE + 3, SIDE),
}


# ----------------------------------------------------------------------------------------------
# Through ingest: refused, data/ untouched
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def ingested(
    tmp_path: Path, image_files: Any, tree_digest: Callable[[Path], str]
) -> tuple[Path, Path, str]:
    """A good dataset already in data/ (the previous data version) and a source folder."""
    source = image_files.write_source(tmp_path / "src" / "in", {name: 12 for name in CLASSES})
    data = tmp_path / "repo" / "data"
    ingest("folder", source, data)
    return source, data, tree_digest(data)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_ingest_refuses_bad_file_and_keeps_previous_data(
    ingested: tuple[Path, Path, str],
    image_files: Any,
    tree_digest: Callable[[Path], str],
    case: str,
) -> None:
    source, data, before = ingested
    make, reason = BAD_FILES[case]
    name = make(source / "b", image_files)
    with pytest.raises(IngestError, match=reason) as caught:
        ingest("folder", source, data)
    assert name in str(caught.value)
    assert tree_digest(data) == before


@pytest.mark.parametrize("case", sorted(ODD_SHAPES))
def test_ingest_keeps_mixed_shapes_for_the_image_policy(
    ingested: tuple[Path, Path, str], image_files: Any, case: str
) -> None:
    """Issue 15: a folder of images of several shapes is ingested as it is (the image policy
    in prepare gives them one shape; without one, validation names the params.yaml fix)."""
    source, data, _ = ingested
    odd = image_files.encode(image_files.noise(5, ODD_SHAPES[case]))
    (source / "a" / "odd.png").write_bytes(odd)
    ingest("folder", source, data)
    assert (data / "a" / "00012.png").read_bytes() == odd  # sorted after 00..11: copied as is
    assert read_manifest(data)["image_shape"] == [SIDE, SIDE, 1]  # the most common shape


def test_ingest_refuses_empty_class_folder_and_empty_dataset(
    ingested: tuple[Path, Path, str], tree_digest: Callable[[Path], str], tmp_path: Path
) -> None:
    source, data, before = ingested
    (source / "d").mkdir()
    with pytest.raises(IngestError, match=r"d: class folder holds no PNG/JPEG images"):
        ingest("folder", source, data)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(IngestError, match="empty dataset"):
        ingest("folder", empty, data)
    assert tree_digest(data) == before


def test_ingest_lists_every_bad_file_not_just_the_first(ingested: tuple[Path, Path, str]) -> None:
    source, data, _ = ingested
    (source / "a" / "x.png").write_bytes(b"")
    (source / "c" / "y.png").write_text("text")
    with pytest.raises(IngestError, match="2 problem") as caught:
        ingest("folder", source, data)
    assert "x.png" in str(caught.value) and "y.png" in str(caught.value)


# ----------------------------------------------------------------------------------------------
# Straight into data/: prepare records, validation stops before training
# ----------------------------------------------------------------------------------------------


def run_pipeline_front(root: Path) -> dict:
    """prepare + validate as the DVC stages do; returns validation.json (raises on failure)."""
    params = PrepareParams(**yaml.safe_load((root / "params.yaml").read_text())["prepare"])
    prepare(root / "data", root / SPLITS_FILE, root / PREPARED_META_FILE, params, 42)
    run_validation(root, data_docs_dir=None)
    return json.loads((root / VALIDATION_METRICS).read_text())


@pytest.fixture
def new_repo(tmp_path: Path, image_files: Any) -> Callable[[dict[str, int]], Path]:
    """new_repo(counts): a repository root with params.yaml and an ingested random dataset."""

    def make(counts: dict[str, int]) -> Path:
        root = tmp_path / "repo"
        ingest("folder", image_files.write_source(tmp_path / "src" / "in", counts), root / "data")
        shutil.copy2(REPO_ROOT / "params.yaml", root / "params.yaml")
        return root

    return make


@pytest.fixture
def repo(new_repo: Callable[[dict[str, int]], Path]) -> Path:
    """A repository root: params.yaml, an ingested good dataset, one accepted validation run."""
    root = new_repo({name: 30 for name in CLASSES})
    run_pipeline_front(root)  # accepted: the previous data version's summary now exists
    return root


@pytest.fixture
def failing(tree_digest: Callable[[Path], str]) -> Callable[[Path], tuple[dict, str]]:
    """failing(root): prepare + validate expecting an error-severity failure; report, message.
    Also checks that data/ and the last accepted data version are untouched."""

    def run(root: Path) -> tuple[dict, str]:
        before_data = tree_digest(root / "data")
        accepted = (root / ACCEPTED_SUMMARY).read_bytes()
        with pytest.raises(ValidationError) as caught:
            run_pipeline_front(root)
        assert tree_digest(root / "data") == before_data  # prepare/validate never edit data/
        assert (root / ACCEPTED_SUMMARY).read_bytes() == accepted  # previous version kept
        report = json.loads((root / VALIDATION_METRICS).read_text())
        assert report["success"] is False
        return report, str(caught.value)

    return run


def check(report: dict, name: str) -> dict:
    return next(c for c in report["checks"] if c["name"] == name)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_in_data_is_recorded_and_stops_validation(
    repo: Path, failing: Callable[[Path], tuple[dict, str]], image_files: Any, case: str
) -> None:
    make, reason = BAD_FILES[case]
    name = make(repo / "data" / "b", image_files)
    report, message = failing(repo)
    assert report["failed_checks"] == ["decodes"]
    decodes = check(report, "decodes")
    assert decodes["observed"] == 1 and decodes["severity"] == "error"
    assert decodes["offending"][0].startswith(f"b/{name}: ") and reason in decodes["offending"][0]
    assert f"b/{name}" in message and "decodes [error]: observed 1" in message


@pytest.mark.parametrize("case", sorted(ODD_SHAPES))
def test_odd_shape_in_data_fails_image_shape(
    repo: Path, failing: Callable[[Path], tuple[dict, str]], image_files: Any, case: str
) -> None:
    odd = image_files.encode(image_files.noise(5, ODD_SHAPES[case]))
    (repo / "data" / "a" / "odd.png").write_bytes(odd)
    report, message = failing(repo)
    assert report["failed_checks"] == ["image_shape"]
    shape = check(report, "image_shape")
    assert shape["offending"] == ["a/odd.png"] and shape["offending_count"] == 1
    assert shape["observed"]["8x8x1"] == 90
    assert "a/odd.png" in message
    fix = "`color_mode: rgb`" if case == "rgb among grayscale" else "`image_size: [8, 8]`"
    assert f"add {fix} under `prepare:` in params.yaml" in message


def test_empty_class_folder_fails_classes_present(
    repo: Path, failing: Callable[[Path], tuple[dict, str]]
) -> None:
    for file in (repo / "data" / "c").iterdir():
        file.unlink()
    report, _ = failing(repo)
    assert "classes_present" in report["failed_checks"]
    assert check(report, "classes_present")["observed"] == {"classes": 3, "missing": ["c"]}


def test_undeclared_class_folder_fails_label_set(
    repo: Path, failing: Callable[[Path], tuple[dict, str]]
) -> None:
    shutil.copytree(repo / "data" / "a", repo / "data" / "zebra")
    report, _ = failing(repo)
    assert "label_set" in report["failed_checks"]
    label_set = check(report, "label_set")
    assert label_set["observed"] == ["zebra"] and label_set["offending_count"] == 30


def test_single_class_dataset_fails(new_repo: Callable[[dict[str, int]], Path]) -> None:
    root = new_repo({"only": 40})
    with pytest.raises(ValidationError, match="classes_present"):
        run_pipeline_front(root)
    assert not (root / ACCEPTED_SUMMARY).exists()


def test_hundred_to_one_imbalance_stops_the_run(new_repo: Callable[[dict[str, int]], Path]) -> None:
    root = new_repo({"big": 2000, "small": 20})
    with pytest.raises(ValidationError, match=r"imbalance_ratio \[error\]: observed 100\.0"):
        run_pipeline_front(root)
    report = json.loads((root / VALIDATION_METRICS).read_text())
    assert "imbalance_ratio" in report["failed_checks"]
    assert report["imbalance_ratio"] == 100.0


def test_same_image_in_train_and_test_fails_exact_leakage(
    repo: Path, failing: Callable[[Path], tuple[dict, str]]
) -> None:
    original = repo / "data" / "a" / "00000.png"
    for index in range(12):  # copies spread over the splits (seeded, so deterministic)
        shutil.copy2(original, repo / "data" / "a" / f"copy{index:02d}.png")
    report, message = failing(repo)
    assert report["failed_checks"] == ["exact_leakage"]
    leak = check(report, "exact_leakage")
    assert leak["observed"] == 1 and "a/00000.png" in leak["offending"][0]
    assert "train:" in leak["offending"][0] and "exact_leakage [error]" in message


def test_empty_dataset_is_a_clear_prepare_error(repo: Path) -> None:
    for name in CLASSES:
        shutil.rmtree(repo / "data" / name)
    with pytest.raises(IngestError, match="holds no images"):
        run_pipeline_front(repo)
