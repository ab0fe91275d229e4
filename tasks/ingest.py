"""Ingest: materialise a source dataset as the canonical raw image folder in `data/`.

Layout written: `data/<class name>/<index>.png` (one PNG per image; the folder source copies
each file as it is, `<index>.<png|jpg|jpeg>`, so any size or colour mode is kept for the prepare
step's image policy) plus `data/manifest.json` (dataset name, source, class names, the (most
common) image shape, counts). Output is byte-deterministic for a given source, so the committed
`data.dvc` matches a fresh ingest of the bundled default.
The folder is built next to `data/` and swapped in only when complete: bad input never leaves
a half-written or mixed dataset behind.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tasks.atomic import replace_dir, write_json
from tasks.paths import DATA_DIR, IMAGE_SUFFIXES, MANIFEST_NAME

SOURCES: tuple[str, ...] = ("digits", "idx", "folder")


class IngestError(ValueError):
    """The source cannot become a dataset; the message says which file or argument and why."""


@dataclass(frozen=True)
class SourceImages:
    """Decoded images of a source: uint8 (N, H, W, C), int labels indexing class_names; or,
    for the folder source, the files themselves (copied as they are) and their common shape."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    origin: str
    files: list[Path] | None = None

    @property
    def image_shape(self) -> list[int]:
        """(height, width, channels) of the images: the most common one for a folder source."""
        return [int(v) for v in self.images.shape[1:]]


@dataclass(frozen=True)
class IngestResult:
    data_dir: Path
    name: str
    source: str
    count: int
    class_names: list[str]


def load_digits_source() -> SourceImages:
    """scikit-learn's bundled 8x8 digits (values 0..16), scaled to 0..255 grayscale."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., np.newaxis]
    class_names = [str(name) for name in digits.target_names]
    return SourceImages(images, digits.target.astype(np.int64), class_names, "sklearn.datasets")


def _find_idx_file(root: Path, kind: str) -> Path:
    candidates = sorted(
        path for path in root.iterdir() if f"{kind}-idx" in path.name and path.is_file()
    )
    if len(candidates) != 1:
        raise IngestError(
            f"idx source {root}: expected exactly one '*{kind}-idx*' file (.gz or raw), "
            f"found {[path.name for path in candidates]}"
        )
    return candidates[0]


def _read_idx(path: Path, expected_dims: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise IngestError(f"{path}: cannot read IDX file ({error})") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise IngestError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    dims = raw[3]
    if dims != expected_dims:
        raise IngestError(f"{path}: expected {expected_dims} dimensions, header says {dims}")
    header_size = 4 + 4 * dims
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    data = np.frombuffer(raw, dtype=np.uint8, offset=header_size)
    if data.size != int(np.prod(shape)):
        raise IngestError(
            f"{path}: header declares shape {shape} but holds {data.size} values (truncated?)"
        )
    return data.reshape(shape)


def load_idx_source(path: Path) -> SourceImages:
    """MNIST-format IDX files (`*images-idx3-ubyte[.gz]`, `*labels-idx1-ubyte[.gz]`)."""
    if not path.is_dir():
        raise IngestError(f"idx source: {path} is not a directory")
    images_file = _find_idx_file(path, "images")
    labels_file = _find_idx_file(path, "labels")
    images = _read_idx(images_file, 3)[..., np.newaxis]
    labels = _read_idx(labels_file, 1).astype(np.int64)
    if len(images) != len(labels):
        raise IngestError(f"idx source {path}: {len(images)} images but {len(labels)} labels")
    class_names = [str(label) for label in range(int(labels.max()) + 1)]
    return SourceImages(images, labels, class_names, f"idx:{images_file.name},{labels_file.name}")


def decode_image(path: Path, root: Path | None = None) -> np.ndarray:
    """Decode one file as uint8 (H, W, C); IngestError says why it cannot be used.

    Same decoder as the prepare step's profile (tasks/profile.py): zero-byte, truncated and
    non-image files, decompression bombs (Pillow's pixel limit, checked before decoding) and
    symlinks resolving outside root are all refused with the reason.
    """
    from tasks.profile import decode_file

    decoded = decode_file(path, root)
    if decoded.array is None:
        raise IngestError(f"{path}: cannot use image ({decoded.error})")
    return decoded.array


def load_folder_source(path: Path) -> SourceImages:
    """Any class-per-folder tree of PNG/JPEG files; class names are the sub-folder names.

    Every file is checked before failing, so the error lists all bad files (first 20), not
    just the first one; nothing is written unless every file is usable. Files may differ in
    size and colour mode: they are copied as they are, and the prepare step's image policy
    (`prepare.image_size`, `color_mode` in params.yaml) gives them one shape.
    """
    if not path.is_dir():
        raise IngestError(f"folder source: {path} is not a directory")
    root = path.resolve()
    class_dirs = sorted(
        child for child in path.iterdir() if child.is_dir() and not child.name.startswith(".")
    )
    if not class_dirs:
        raise IngestError(f"folder source {path}: no class sub-folders found (empty dataset)")
    kept: list[Path] = []
    shapes: Counter[tuple[int, ...]] = Counter()
    labels: list[int] = []
    problems: list[str] = []
    for label, class_dir in enumerate(class_dirs):
        files = sorted(
            file
            for file in class_dir.rglob("*")
            if file.suffix.lower() in IMAGE_SUFFIXES and not file.is_dir()
        )
        if not files:
            problems.append(f"{class_dir}: class folder holds no PNG/JPEG images")
        for file in files:
            try:
                shapes[decode_image(file, root).shape] += 1
                kept.append(file)
                labels.append(label)
            except IngestError as error:
                problems.append(str(error))
    if problems:
        listed = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise IngestError(
            f"folder source {path}: {len(problems)} problem(s), nothing ingested:\n  {listed}{more}"
        )
    class_names = [class_dir.name for class_dir in class_dirs]
    common = shapes.most_common(1)[0][0] if shapes else (0, 0, 0)
    empty = np.zeros((0, *common), np.uint8)
    return SourceImages(empty, np.asarray(labels, np.int64), class_names, "folder", kept)


def load_source(source: str, path: Path | None) -> SourceImages:
    if source not in SOURCES:
        raise IngestError(f"unknown source '{source}'; choose one of {', '.join(SOURCES)}")
    if source == "digits":
        return load_digits_source()
    if path is None:
        raise IngestError(f"source '{source}' needs --path")
    return load_idx_source(path) if source == "idx" else load_folder_source(path)


def default_name(source: str, path: Path | None) -> str:
    """Dataset name used for registered models: 'digits', or the source folder's name."""
    if source == "digits" or path is None:
        return "digits"
    return path.resolve().name.lower().replace("_", "-").replace(" ", "-")


def write_image_folder(
    loaded: SourceImages, out_dir: Path, name: str, source: str
) -> dict[str, Any]:
    """Write one PNG per image under out_dir/<class>/ and the manifest; returns the manifest."""
    counts = np.bincount(loaded.labels, minlength=len(loaded.class_names))
    next_index = np.zeros(len(loaded.class_names), dtype=np.int64)
    for class_name in loaded.class_names:
        (out_dir / class_name).mkdir(parents=True)
    if loaded.files is not None:  # copied as they are: the image policy applies in prepare
        for source_file, label in zip(loaded.files, loaded.labels, strict=True):
            suffix = source_file.suffix.lower()
            file = out_dir / loaded.class_names[label] / f"{next_index[label]:05d}{suffix}"
            next_index[label] += 1
            shutil.copyfile(source_file, file)
    else:
        for image, label in zip(loaded.images, loaded.labels, strict=True):
            file = out_dir / loaded.class_names[label] / f"{next_index[label]:05d}.png"
            next_index[label] += 1
            picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
            picture.save(file, format="PNG")
    manifest: dict[str, Any] = {
        "name": name,
        "source": source,
        "origin": loaded.origin,
        "class_names": loaded.class_names,
        "image_shape": loaded.image_shape,
        "count": len(loaded.labels),
        "class_counts": {n: int(c) for n, c in zip(loaded.class_names, counts, strict=True)},
    }
    write_json(out_dir / MANIFEST_NAME, manifest)
    return manifest


def ingest(
    source: str = "digits",
    path: Path | None = None,
    data_dir: Path = DATA_DIR,
    name: str | None = None,
) -> IngestResult:
    """Load a source and atomically replace data_dir with its canonical image folder."""
    loaded = load_source(source, path)
    if len(loaded.labels) == 0:
        raise IngestError(f"source '{source}' holds no images")
    name = name or default_name(source, path)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}-ingest-", dir=data_dir.parent))
    try:
        write_image_folder(loaded, staging / "data", name, source)
        replace_dir(staging / "data", data_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return IngestResult(data_dir, name, source, len(loaded.labels), loaded.class_names)


def read_manifest(data_dir: Path = DATA_DIR) -> dict[str, Any]:
    """The dataset's manifest (name, source, class names, image shape, counts)."""
    manifest_file = data_dir / MANIFEST_NAME
    if not manifest_file.is_file():
        raise IngestError(f"{manifest_file} not found: run `imgflow ingest` first")
    return json.loads(manifest_file.read_text())


def version_data(data_dir: Path = DATA_DIR, repo_root: Path = Path(".")) -> None:
    """Record the data folder as a DVC data version (`dvc add`), pushing when a remote exists.

    Runs DVC in-process: re-adding unchanged data only re-checks hashes (under a second).
    """
    from tasks.stages import open_dvc_repo

    logging.getLogger("dvc").setLevel(logging.WARNING)  # its git hints are for CLI users
    target = str(data_dir.resolve().relative_to(repo_root.resolve()))
    with open_dvc_repo(repo_root) as repo:
        repo.add(target)
        if repo.config.get("remote"):
            repo.push(targets=[f"{target}.dvc"])


def ensure_dataset(
    source: str = "digits",
    path: Path | None = None,
    name: str | None = None,
    repo_root: Path = Path("."),
) -> bool:
    """Make data_dir hold `source` as a DVC data version; returns True when it (re)ingested.

    A digits or idx dataset already in place (same source, origin and name) is kept as is;
    a folder source is re-read every time, since its files may have changed (an unchanged
    folder gives the same bytes, so DVC sees the same data version).
    """
    data_dir = repo_root / DATA_DIR
    wanted_name = name or default_name(source, path)
    if source != "folder" and (data_dir / MANIFEST_NAME).is_file():
        manifest = read_manifest(data_dir)
        if manifest.get("source") == source and manifest.get("name") == wanted_name:
            loaded_origin = manifest.get("origin")
            if source == "digits" or (path is not None and _idx_origin(path) == loaded_origin):
                version_data(data_dir, repo_root)  # no-op when data.dvc already matches
                return False
    ingest(source, path, data_dir, wanted_name)
    version_data(data_dir, repo_root)
    return True


def _idx_origin(path: Path) -> str:
    return f"idx:{_find_idx_file(path, 'images').name},{_find_idx_file(path, 'labels').name}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=SOURCES, default="digits")
    parser.add_argument("--path", type=Path, help="source folder (idx and folder sources)")
    parser.add_argument("--name", help="dataset name for registered models (default: derived)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--no-version", action="store_true", help="skip `dvc add`")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = ingest(args.source, args.path, args.data_dir, args.name)
    except IngestError as error:
        print(f"ingest failed, {args.data_dir} left unchanged: {error}", file=sys.stderr)
        return 1
    if not args.no_version:
        version_data(args.data_dir)
    print(f"ingested {result.count} images of {len(result.class_names)} classes as '{result.name}'")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
