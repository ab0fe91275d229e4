"""Per-image profile: decode every file of the raw dataset once and describe it in one table row.

The prepare step calls `profile_files` and writes the decoded arrays (splits.npz) and this table
(`artifacts/prepared/profile.parquet`) together; the validate step checks the table with Great
Expectations and never decodes an image again. A file that cannot be read (zero bytes, truncated,
not an image, over Pillow's decompression-bomb limit, a symlink leaving the data folder) gets a
row with its `error` and no pixels instead of stopping the run, so validation can report every
bad file at once.

Columns: path, label (-1 for a folder outside the declared classes), label_name, split
(train/val/test, or `excluded` for rows not in the arrays), error, format, mode (the file's own
colour mode), channels, width, height (after the image policy, tasks/image_policy.py),
source_width, source_height (the upright file's own size), upscale (linear enlargement applied),
blank_after_resize, file_size, pixel_min, pixel_max, pixel_mean, pixel_std, sha256 (of the
decoded pixels, so re-encoded copies match), dhash (64-bit difference hash, as a signed int64).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from tasks.atomic import atomic_path
from tasks.image_policy import ImagePolicy, apply_policy
from tasks.paths import IMAGE_SUFFIXES, PROFILE_FILE

if TYPE_CHECKING:
    import pandas as pd

EXCLUDED = "excluded"  # split of a profiled file left out of the arrays
# Below this many files one process decodes faster than starting a pool.
PARALLEL_MIN_FILES = 4000
CHUNK_FILES = 2000

STAT_COLUMNS: tuple[str, ...] = ("pixel_min", "pixel_max", "pixel_mean", "pixel_std")
PROFILE_COLUMNS: tuple[str, ...] = (
    "path",
    "label",
    "label_name",
    "split",
    "error",
    "format",
    "mode",
    "channels",
    "width",
    "height",
    "source_width",
    "source_height",
    "upscale",
    "blank_after_resize",
    "file_size",
    "pixel_min",
    "pixel_max",
    "pixel_mean",
    "pixel_std",
    "sha256",
    "dhash",
)


@dataclass(frozen=True)
class Decoded:
    """One file's decode outcome: the uint8 (H, W, C) pixels, or None and the error."""

    array: np.ndarray | None
    error: str | None
    format: str | None
    mode: str | None
    file_size: int
    sha256: str | None
    source_size: tuple[int, int] | None = None  # (height, width) of the upright file
    upscale: float = 1.0
    blank_after_resize: bool = False


NO_POLICY = ImagePolicy()


def decode_file(path: Path, root: Path | None = None, policy: ImagePolicy = NO_POLICY) -> Decoded:
    """Decode one image file under the image policy without raising: every failure becomes
    `Decoded.error`.

    Pillow's decompression-bomb limit (Image.MAX_IMAGE_PIXELS) is enforced from the header,
    before any pixel is decoded, so a bomb costs microseconds, not gigabytes.
    """
    try:
        # Only a symlink (or a symlinked folder above it) can leave root; lstat is cheap.
        if root is not None and (path.is_symlink() or path.parent.is_symlink()):
            target = path.resolve()
            if not target.is_relative_to(root):
                return _failed(f"resolves outside the data folder ({target}); not read", 0)
        size = path.stat().st_size
    except OSError as error:
        return _failed(f"cannot read file ({error})", 0)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return _failed(f"not an image file type ({path.suffix or 'no suffix'})", size)
    if size == 0:
        return _failed("zero-byte file", size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                limit = Image.MAX_IMAGE_PIXELS
                if limit and image.width * image.height > limit:
                    return _failed(
                        f"decompression bomb: {image.width}x{image.height} pixels exceeds "
                        f"Pillow's limit of {limit}",
                        size,
                        image.format,
                    )
                image_format, mode = image.format, image.mode
                pixels = apply_policy(image, policy)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return _failed(f"decompression bomb: {error}", size)
    except Image.UnidentifiedImageError:
        return _failed("not an image (Pillow cannot identify the file)", size)
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        return _failed(f"cannot decode ({error})", size)
    array = pixels.array
    digest = hashlib.sha256(array.tobytes()).hexdigest()
    return Decoded(
        array,
        None,
        image_format,
        mode,
        size,
        digest,
        pixels.source_size,
        pixels.upscale,
        pixels.blank_after_resize,
    )


def _failed(message: str, size: int, image_format: str | None = None) -> Decoded:
    return Decoded(None, message, image_format, None, size, None)


@dataclass
class Profiled:
    """Columns of decoded files in file order, plus the pixels grouped by image shape."""

    decoded: list[Decoded]  # arrays dropped: pixels live in `groups`
    shape: np.ndarray  # (N, 3) int64, -1 where the file did not decode
    stats: dict[str, np.ndarray]
    dhash: np.ndarray
    groups: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]]  # shape -> (indices, images)


def _profile_chunk(
    paths: Sequence[str], root: str, offset: int = 0, policy: ImagePolicy = NO_POLICY
) -> Profiled:
    """Decode, then compute statistics and hashes per shape group (worker entry point)."""
    root_path = Path(root)
    decoded = [decode_file(Path(path), root_path, policy) for path in paths]
    n = len(decoded)
    shape = np.full((n, 3), -1, dtype=np.int64)
    stats = {key: np.full(n, np.nan) for key in STAT_COLUMNS}
    hashes = np.zeros(n, dtype=np.int64)
    members: dict[tuple[int, ...], list[int]] = {}
    pixels: dict[int, np.ndarray] = {}
    for index, item in enumerate(decoded):
        if item.array is not None:
            shape[index] = item.array.shape
            members.setdefault(item.array.shape, []).append(index)
            pixels[index] = item.array
    groups: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}
    for key, indices in members.items():
        stack = np.stack([pixels[i] for i in indices])
        for column, values in pixel_stats(stack).items():
            stats[column][indices] = values
        hashes[indices] = dhash(stack)
        groups[key] = (np.asarray(indices, dtype=np.int64) + offset, stack)
    slim = [dataclasses.replace(item, array=None) for item in decoded]
    return Profiled(slim, shape, stats, hashes, groups)


def profile_files(
    files: Sequence[Path],
    root: Path,
    workers: int | None = None,
    policy: ImagePolicy = NO_POLICY,
) -> Profiled:
    """Decode and profile files (in file order) under the image policy; in worker processes
    when it pays.

    Processes, not threads: for small images Pillow's Python-level header parsing holds the
    GIL longer than the C decoder releases it, so threads barely help (measured). Workers
    return pixel stacks and column arrays, not one object per image, to keep transfer cheap.
    """
    root = root.resolve()
    workers = workers or os.cpu_count() or 1
    names = [str(file) for file in files]
    if workers < 2 or len(files) < PARALLEL_MIN_FILES:
        return _profile_chunk(names, str(root), 0, policy)
    starts = list(range(0, len(names), CHUNK_FILES))
    chunks = [names[start : start + CHUNK_FILES] for start in starts]
    # fork: workers start in milliseconds and need not re-import the caller's __main__ (which
    # forkserver/spawn do, and which fails for `python -c` or stdin callers).
    try:
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            repeat = len(chunks)
            parts = list(
                pool.map(_profile_chunk, chunks, [str(root)] * repeat, starts, [policy] * repeat)
            )
    except BrokenProcessPool:  # a worker died (e.g. out of memory): finish in this process
        parts = [
            _profile_chunk(chunk, str(root), start, policy)
            for chunk, start in zip(chunks, starts, strict=True)
        ]
    merged: dict[tuple[int, ...], list[tuple[np.ndarray, np.ndarray]]] = {}
    for part in parts:
        for key, group in part.groups.items():
            merged.setdefault(key, []).append(group)
    return Profiled(
        [item for part in parts for item in part.decoded],
        np.concatenate([part.shape for part in parts]),
        {key: np.concatenate([part.stats[key] for part in parts]) for key in STAT_COLUMNS},
        np.concatenate([part.dhash for part in parts]),
        {
            key: (
                np.concatenate([indices for indices, _ in items]),
                np.concatenate([images for _, images in items]),
            )
            for key, items in merged.items()
        },
    )


def dhash(images: np.ndarray) -> np.ndarray:
    """64-bit difference hashes of uint8 (N, H, W, C) images, as int64 (vectorised numpy).

    Each image is averaged to grey, area-resampled to 8 rows x 9 columns, and bit i says
    whether a cell is brighter than its right neighbour: robust to small noise and re-encoding.
    """
    grey = images.astype(np.float32).mean(axis=3)
    rows = _area_matrix(images.shape[1], 8)
    cols = _area_matrix(images.shape[2], 9)
    small = np.einsum("rh,nhw,cw->nrc", rows, grey, cols, optimize=True)
    bits = (small[:, :, 1:] > small[:, :, :-1]).reshape(len(images), 64)
    weights = (np.uint64(1) << np.arange(64, dtype=np.uint64)).astype(np.uint64)
    hashes = (bits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
    return hashes.view(np.int64)


def _area_matrix(size: int, cells: int) -> np.ndarray:
    """(cells, size) weights averaging each of `cells` equal intervals of `size` pixels."""
    edges = np.linspace(0, size, cells + 1)
    pixel = np.arange(size)
    overlap = np.clip(
        np.minimum(edges[1:, None], pixel[None, :] + 1) - np.maximum(edges[:-1, None], pixel),
        0,
        None,
    )
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit distance between int64 hashes (broadcasting)."""
    return np.bitwise_count(np.bitwise_xor(a, b))


def pixel_stats(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image min, max, mean and standard deviation of uint8 (N, H, W, C) images."""
    flat = images.reshape(len(images), -1)
    mean = flat.mean(axis=1, dtype=np.float64)
    square = np.einsum("ij,ij->i", flat.astype(np.float32), flat.astype(np.float32))
    var = np.maximum(square / flat.shape[1] - mean**2, 0.0)
    return {
        "pixel_min": flat.min(axis=1).astype(np.float64),
        "pixel_max": flat.max(axis=1).astype(np.float64),
        "pixel_mean": mean,
        "pixel_std": np.sqrt(var),
    }


def build_profile(
    paths: Sequence[str], labels: Sequence[int], label_names: Sequence[str], profiled: Profiled
) -> pd.DataFrame:
    """The profile table (split column set to `excluded`; prepare fills in the splits)."""
    import pandas as pd

    decoded = profiled.decoded
    decodes = profiled.shape[:, 0] >= 0
    frame = pd.DataFrame(
        {
            "path": pd.array(list(paths), dtype="string"),
            "label": np.asarray(labels, dtype=np.int64),
            "label_name": pd.array(list(label_names), dtype="string"),
            "split": pd.array([EXCLUDED] * len(paths), dtype="string"),
            "error": pd.array([item.error for item in decoded], dtype="string"),
            "format": pd.array([item.format for item in decoded], dtype="string"),
            "mode": pd.array([item.mode for item in decoded], dtype="string"),
            "channels": pd.array(profiled.shape[:, 2], dtype="Int64"),
            "width": pd.array(profiled.shape[:, 1], dtype="Int64"),
            "height": pd.array(profiled.shape[:, 0], dtype="Int64"),
            "source_width": pd.array(
                [None if d.source_size is None else d.source_size[1] for d in decoded],
                dtype="Int64",
            ),
            "source_height": pd.array(
                [None if d.source_size is None else d.source_size[0] for d in decoded],
                dtype="Int64",
            ),
            "upscale": np.asarray([item.upscale for item in decoded], dtype=np.float64),
            "blank_after_resize": np.asarray(
                [item.blank_after_resize for item in decoded], dtype=bool
            ),
            "file_size": np.asarray([item.file_size for item in decoded], dtype=np.int64),
            **profiled.stats,
            "sha256": pd.array([item.sha256 for item in decoded], dtype="string"),
            "dhash": pd.array(profiled.dhash, dtype="Int64"),
        }
    )
    for column in ("channels", "width", "height", "dhash"):
        frame.loc[~decodes, column] = pd.NA
    return frame[list(PROFILE_COLUMNS)]


def write_profile(frame: pd.DataFrame, path: Path = PROFILE_FILE) -> None:
    """Write the table as Parquet, atomically."""
    with atomic_path(path) as temporary:
        frame.to_parquet(temporary, index=False)


def read_profile(path: Path = PROFILE_FILE) -> pd.DataFrame:
    """The profile table written by the prepare stage."""
    import pandas as pd

    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: run the prepare stage first (dvc repro prepare)"
        )
    return pd.read_parquet(path)
