"""Per-image profile: one decode per file, failures recorded, hashes that find near-copies."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from tasks.profile import decode_file, dhash, hamming, profile_files


def test_decode_file_records_every_failure_kind_without_raising(
    tmp_path: Path, image_files
) -> None:
    cases = {
        "ok.png": (image_files.encode(image_files.noise(1)), None),
        "empty.png": (b"", "zero-byte"),
        "text.png": (b"hello\n", "not an image"),
        "cut.jpg": (image_files.truncated_jpeg(), "truncated"),
        "bomb.png": (image_files.bomb_png(), "decompression bomb"),
        "data.txt": (b"1,2,3", "not an image file type"),
    }
    for name, (content, _) in cases.items():
        (tmp_path / name).write_bytes(content)
    for name, (_, reason) in cases.items():
        decoded = decode_file(tmp_path / name, tmp_path)
        if reason is None:
            assert decoded.error is None and decoded.array.shape == (8, 8, 1)
            np.testing.assert_array_equal(decoded.array[..., 0], image_files.noise(1))
            expected = hashlib.sha256(image_files.noise(1).tobytes()).hexdigest()
            assert decoded.format == "PNG" and decoded.sha256 == expected
        else:
            assert decoded.array is None and reason in decoded.error, (name, decoded.error)


def test_symlink_outside_root_is_not_read(tmp_path: Path, image_files) -> None:
    (tmp_path / "outside.png").write_bytes(image_files.encode(image_files.noise(2)))
    root = tmp_path / "data"
    root.mkdir()
    (root / "link.png").symlink_to(tmp_path / "outside.png")
    (root / "inside.png").write_bytes(image_files.encode(image_files.noise(3)))
    (root / "ok-link.png").symlink_to(root / "inside.png")
    assert "outside the data folder" in decode_file(root / "link.png", root.resolve()).error
    assert decode_file(root / "ok-link.png", root.resolve()).error is None


def test_sha256_is_of_pixels_so_a_reencoded_copy_matches(tmp_path: Path, image_files) -> None:
    image = image_files.noise(4)
    (tmp_path / "a.png").write_bytes(image_files.encode(image))
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "b.png", compress_level=0)
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()
    assert decode_file(tmp_path / "a.png").sha256 == decode_file(tmp_path / "b.png").sha256


def test_dhash_is_stable_under_small_noise_and_separates_different_images() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(50, 28, 28, 1), dtype=np.uint8)
    noisy = np.clip(base.astype(int) + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)
    same = hamming(dhash(base), dhash(noisy))
    other = hamming(dhash(base), dhash(np.roll(base, 1, axis=0)))
    assert np.median(same) <= 4 and np.median(other) >= 20
    assert dhash(base).dtype == np.int64


def test_profile_files_keeps_file_order_and_groups_pixels_by_shape(
    tmp_path: Path, image_files
) -> None:
    files = []
    for index, shape in enumerate([(8, 8), (8, 8, 3), (8, 8), (5, 5)]):
        files.append(tmp_path / f"{index}.png")
        files[-1].write_bytes(image_files.encode(image_files.noise(index, shape)))
    files.append(tmp_path / "bad.png")
    files[-1].write_bytes(b"")
    profiled = profile_files(files, tmp_path)
    assert profiled.shape.tolist() == [[8, 8, 1], [8, 8, 3], [8, 8, 1], [5, 5, 1], [-1, -1, -1]]
    indices, images = profiled.groups[(8, 8, 1)]
    assert indices.tolist() == [0, 2] and images.shape == (2, 8, 8, 1)
    np.testing.assert_array_equal(images[1, ..., 0], image_files.noise(2, (8, 8)))
    assert np.isnan(profiled.stats["pixel_mean"][4])
    assert profiled.stats["pixel_mean"][3] == image_files.noise(3, (5, 5)).mean()
    assert profiled.stats["pixel_max"][0] == image_files.noise(0, (8, 8)).max()
