"""Bad input, one test per case: a clear error naming the file, and nothing lost.

Two ways bad files reach the pipeline, both covered: through `ingest --source folder` (refused
with an IngestError listing every bad file; data/ stays exactly as it was), and by landing in
data/ directly (prepare records them in the profile instead of crashing, validation fails with
an error-severity check naming the files; data/ and the last accepted data version stay as
they were, so nothing downstream, training or registration, runs).
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tasks.ingest import IngestError, ingest
from tasks.paths import PREPARED_META_FILE, SPLITS_FILE, VALIDATION_METRICS
from tasks.prepare import prepare
from tasks.validate import ACCEPTED_SUMMARY, ValidationError, run_validation
from tests.conftest import tree_digest

REPO_ROOT = Path(__file__).resolve().parents[2]
CLASSES = ("a", "b", "c")
SIDE = 8


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def noise(seed: int, shape: tuple[int, ...] = (SIDE, SIDE)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def write_source(folder: Path, counts: dict[str, int]) -> Path:
    """A class-per-folder source of distinct random grayscale PNGs."""
    seed = 0
    for name, count in counts.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            seed += 1
            (folder / name / f"{index:04d}.png").write_bytes(png_bytes(noise(seed)))
    return folder


def bomb_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A tiny PNG whose header declares width x height pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def truncated_jpeg() -> bytes:
    data = png_bytes(noise(99, (64, 64)), "JPEG")
    return data[: len(data) // 2]


# name -> (writes a bad file into a class folder, returns its name; fragment of the reason)
BAD_FILES: dict[str, tuple[Callable[[Path], str], str]] = {
    "corrupt png": (
        lambda d: (
            (d / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20) and "bad.png"
        ),
        "cannot",
    ),
    "truncated jpeg": (
        lambda d: (d / "cut.jpg").write_bytes(truncated_jpeg()) and "cut.jpg",
        "truncated",
    ),
    "zero-byte file": (lambda d: (d / "empty.png").write_bytes(b"") or "empty.png", "zero-byte"),
    "text file with image extension": (
        lambda d: (d / "notes.png").write_text("not an image\n") and "notes.png",
        "not an image",
    ),
    "decompression bomb": (
        lambda d: (d / "bomb.png").write_bytes(bomb_png()) and "bomb.png",
        "decompression bomb",
    ),
}


def escaping_symlink(folder: Path) -> str:
    outside = folder.parents[2] / "outside.png"
    outside.write_bytes(png_bytes(noise(7)))
    (folder / "link.png").symlink_to(outside)
    return "link.png"


BAD_FILES["symlink escaping the data folder"] = (escaping_symlink, "outside")


# ----------------------------------------------------------------------------------------------
# Through ingest: refused, data/ untouched
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def ingested(tmp_path: Path) -> tuple[Path, Path, str]:
    """A good dataset already in data/ (the previous data version) and a source folder."""
    source = write_source(tmp_path / "src" / "in", {name: 12 for name in CLASSES})
    data = tmp_path / "repo" / "data"
    ingest("folder", source, data)
    return source, data, tree_digest(data)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_ingest_refuses_bad_file_and_keeps_previous_data(ingested, case: str) -> None:
    source, data, before = ingested
    make, reason = BAD_FILES[case]
    name = make(source / "b")
    with pytest.raises(IngestError, match=reason) as caught:
        ingest("folder", source, data)
    assert name in str(caught.value)
    assert tree_digest(data) == before


@pytest.mark.parametrize(
    ("case", "array", "fragment"),
    [
        ("rgb among grayscale", noise(5, (SIDE, SIDE, 3)), "different shapes"),
        ("wrong size", noise(5, (SIDE + 3, SIDE)), "different shapes"),
    ],
)
def test_ingest_refuses_mixed_shapes(ingested, case: str, array, fragment: str) -> None:
    source, data, before = ingested
    (source / "a" / "odd.png").write_bytes(png_bytes(array))
    with pytest.raises(IngestError, match=fragment):
        ingest("folder", source, data)
    assert tree_digest(data) == before


def test_ingest_refuses_empty_class_folder_and_empty_dataset(ingested, tmp_path: Path) -> None:
    source, data, before = ingested
    (source / "d").mkdir()
    with pytest.raises(IngestError, match=r"d: class folder holds no PNG/JPEG images"):
        ingest("folder", source, data)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(IngestError, match="empty dataset"):
        ingest("folder", empty, data)
    assert tree_digest(data) == before


def test_ingest_lists_every_bad_file_not_just_the_first(ingested) -> None:
    source, data, _ = ingested
    (source / "a" / "x.png").write_bytes(b"")
    (source / "c" / "y.png").write_text("text")
    with pytest.raises(IngestError, match="2 problem") as caught:
        ingest("folder", source, data)
    assert "x.png" in str(caught.value) and "y.png" in str(caught.value)


# ----------------------------------------------------------------------------------------------
# Straight into data/: prepare records, validation stops before training
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository root: params.yaml, an ingested good dataset, one accepted validation run."""
    root = tmp_path / "repo"
    ingest("folder", write_source(tmp_path / "src" / "in", {n: 30 for n in CLASSES}), root / "data")
    shutil.copy2(REPO_ROOT / "params.yaml", root / "params.yaml")
    run_pipeline_front(root)  # accepted: the previous data version's summary now exists
    return root


def run_pipeline_front(root: Path) -> dict:
    """prepare + validate as the DVC stages do; returns validation.json (raises on failure)."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    prepare(root / "data", root / SPLITS_FILE, root / PREPARED_META_FILE, params["prepare"], 42)
    run_validation(root, data_docs_dir=None)
    return json.loads((root / VALIDATION_METRICS).read_text())


def failing(root: Path) -> tuple[dict, str]:
    """Run prepare + validate expecting an error-severity failure; report and message."""
    before_data = tree_digest(root / "data")
    accepted = (root / ACCEPTED_SUMMARY).read_bytes()
    with pytest.raises(ValidationError) as caught:
        run_pipeline_front(root)
    assert tree_digest(root / "data") == before_data  # prepare/validate never edit data/
    assert (root / ACCEPTED_SUMMARY).read_bytes() == accepted  # previous version kept
    report = json.loads((root / VALIDATION_METRICS).read_text())
    assert report["success"] is False
    return report, str(caught.value)


def check(report: dict, name: str) -> dict:
    return next(c for c in report["checks"] if c["name"] == name)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_in_data_is_recorded_and_stops_validation(repo: Path, case: str) -> None:
    make, reason = BAD_FILES[case]
    name = make(repo / "data" / "b")
    report, message = failing(repo)
    assert report["failed_checks"] == ["decodes"]
    decodes = check(report, "decodes")
    assert decodes["observed"] == 1 and decodes["severity"] == "error"
    assert decodes["offending"][0].startswith(f"b/{name}: ") and reason in decodes["offending"][0]
    assert f"b/{name}" in message and "decodes [error]: observed 1" in message


@pytest.mark.parametrize(
    ("case", "array"),
    [
        ("rgb among grayscale", noise(5, (SIDE, SIDE, 3))),
        ("wrong size", noise(5, (SIDE + 3, SIDE))),
    ],
)
def test_odd_shape_in_data_fails_image_shape(repo: Path, case: str, array) -> None:
    (repo / "data" / "a" / "odd.png").write_bytes(png_bytes(array))
    report, message = failing(repo)
    assert report["failed_checks"] == ["image_shape"]
    shape = check(report, "image_shape")
    assert shape["offending"] == ["a/odd.png"]
    assert shape["observed"]["8x8x1"] == 90
    assert "a/odd.png" in message


def test_empty_class_folder_fails_classes_present(repo: Path) -> None:
    for file in (repo / "data" / "c").iterdir():
        file.unlink()
    report, _ = failing(repo)
    assert "classes_present" in report["failed_checks"]
    assert check(report, "classes_present")["observed"] == {"classes": 3, "missing": ["c"]}


def test_undeclared_class_folder_fails_label_set(repo: Path) -> None:
    shutil.copytree(repo / "data" / "a", repo / "data" / "zebra")
    report, _ = failing(repo)
    assert "label_set" in report["failed_checks"]
    label_set = check(report, "label_set")
    assert label_set["observed"] == ["zebra"] and label_set["offending_count"] == 30


def test_single_class_dataset_fails(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    ingest("folder", write_source(tmp_path / "src", {"only": 40}), root / "data")
    shutil.copy2(REPO_ROOT / "params.yaml", root / "params.yaml")
    with pytest.raises(ValidationError, match="classes_present"):
        run_pipeline_front(root)
    assert not (root / ACCEPTED_SUMMARY).exists()


def test_hundred_to_one_imbalance_stops_the_run(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    ingest("folder", write_source(tmp_path / "src", {"big": 2000, "small": 20}), root / "data")
    shutil.copy2(REPO_ROOT / "params.yaml", root / "params.yaml")
    with pytest.raises(ValidationError, match=r"imbalance_ratio \[error\]: observed 100\.0"):
        run_pipeline_front(root)
    report = json.loads((root / VALIDATION_METRICS).read_text())
    assert "imbalance_ratio" in report["failed_checks"]
    assert report["imbalance_ratio"] == 100.0


def test_same_image_in_train_and_test_fails_exact_leakage(repo: Path) -> None:
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
