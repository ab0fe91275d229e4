"""Ingest: determinism, the three sources, and bad input rejected with nothing lost."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.ingest import IngestError, ingest, load_idx_source, read_manifest


def write_idx(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 8, 3]) + b"".join(int(n).to_bytes(4, "big") for n in images.shape)
    (folder / "t-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + images.tobytes()))
    header = bytes([0, 0, 8, 1]) + len(labels).to_bytes(4, "big")
    (folder / "t-labels-idx1-ubyte.gz").write_bytes(gzip.compress(header + labels.tobytes()))


def test_digits_ingest_is_byte_deterministic(tmp_path: Path, tree_digest) -> None:
    first = ingest("digits", None, tmp_path / "a" / "data")
    ingest("digits", None, tmp_path / "b" / "data")
    assert first.count == 1797 and first.class_names == [str(i) for i in range(10)]
    assert tree_digest(tmp_path / "a" / "data") == tree_digest(tmp_path / "b" / "data")
    manifest = read_manifest(tmp_path / "a" / "data")
    assert manifest["image_shape"] == [8, 8, 1] and manifest["name"] == "digits"
    assert manifest["count"] == 1797 and manifest["class_counts"]["3"] == 183
    text = (tmp_path / "a" / "data" / "manifest.json").read_text()
    assert text.startswith('{\n  "class_counts"') and text.endswith("}\n")  # sorted, indent 2


def test_committed_data_version_matches_a_fresh_digits_ingest(tmp_path: Path) -> None:
    """data.dvc must describe exactly what `make run` materialises on a fresh clone."""
    import yaml
    from dvc.repo import Repo

    ingest("digits", None, tmp_path / "data")
    committed = yaml.safe_load(Path("data.dvc").read_text())["outs"][0]
    Repo.init(str(tmp_path), no_scm=True)
    with Repo(str(tmp_path)) as repo:
        repo.add(str(tmp_path / "data"))
    fresh = yaml.safe_load((tmp_path / "data.dvc").read_text())["outs"][0]
    assert fresh["md5"] == committed["md5"] and fresh["nfiles"] == committed["nfiles"]


def test_idx_source_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(30, 28, 28), dtype=np.uint8)
    labels = np.arange(30, dtype=np.uint8) % 3
    write_idx(tmp_path / "idx", images, labels)
    loaded = load_idx_source(tmp_path / "idx")
    np.testing.assert_array_equal(loaded.images[..., 0], images)
    np.testing.assert_array_equal(loaded.labels, labels)
    result = ingest("idx", tmp_path / "idx", tmp_path / "data")
    assert result.name == "idx" and result.count == 30


def test_truncated_idx_file_is_rejected_and_data_kept(tmp_path: Path, tree_digest) -> None:
    ingest("digits", None, tmp_path / "data")
    before = tree_digest(tmp_path / "data")
    images = np.zeros((10, 28, 28), np.uint8)
    write_idx(tmp_path / "idx", images, np.zeros(10, np.uint8))
    blob = gzip.decompress((tmp_path / "idx" / "t-images-idx3-ubyte.gz").read_bytes())
    (tmp_path / "idx" / "t-images-idx3-ubyte.gz").write_bytes(gzip.compress(blob[:-100]))
    with pytest.raises(IngestError, match="truncated"):
        ingest("idx", tmp_path / "idx", tmp_path / "data")
    assert tree_digest(tmp_path / "data") == before


def test_folder_source_reads_classes_and_rejects_corrupt_files(tmp_path: Path, tree_digest) -> None:
    source = tmp_path / "src"
    for label in ("cat", "dog"):
        (source / label).mkdir(parents=True)
        for index in range(3):
            Image.fromarray(np.full((6, 6), index * 40, np.uint8)).save(
                source / label / f"{index}.png"
            )
    result = ingest("folder", source, tmp_path / "data")
    assert result.class_names == ["cat", "dog"] and result.count == 6
    before = tree_digest(tmp_path / "data")
    (source / "dog" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(IngestError, match=r"broken\.png"):
        ingest("folder", source, tmp_path / "data")
    assert tree_digest(tmp_path / "data") == before


def test_folder_source_keeps_mixed_shapes_as_they_are_and_rejects_escaping_symlinks(
    tmp_path: Path,
) -> None:
    source = tmp_path / "src"
    (source / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(source / "a" / "0.png")
    Image.fromarray(np.zeros((7, 7), np.uint8)).save(source / "a" / "1.png")
    Image.fromarray(np.zeros((7, 9, 3), np.uint8)).save(source / "a" / "2.JPG")
    ingest("folder", source, tmp_path / "data")
    # The files are copied byte for byte: the image policy applies in prepare, not here.
    for name, copied in (("0.png", "00000.png"), ("1.png", "00001.png"), ("2.JPG", "00002.jpg")):
        assert (tmp_path / "data" / "a" / copied).read_bytes() == (source / "a" / name).read_bytes()
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["image_shape"] == [6, 6, 1] and manifest["count"] == 3  # the first most common
    for name in ("1.png", "2.JPG"):
        (source / "a" / name).unlink()
    outside = tmp_path / "outside.png"
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(outside)
    (source / "a" / "2.png").symlink_to(outside)
    with pytest.raises(IngestError, match="outside"):
        ingest("folder", source, tmp_path / "data")


def test_unknown_source_and_missing_path_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="unknown source"):
        ingest("imagenet", None, tmp_path / "data")
    with pytest.raises(IngestError, match="needs --path"):
        ingest("idx", None, tmp_path / "data")


def test_real_mnist_idx_files_parse(mnist_dir: Path) -> None:
    loaded = load_idx_source(mnist_dir)
    assert loaded.images.shape == (10000, 28, 28, 1)
    assert np.bincount(loaded.labels).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
