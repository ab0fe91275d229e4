"""Prepare: decode the raw image folder once and split it into compact train/val/test arrays.

The split is stratified by class with the shared seed, so every split keeps the dataset's class
distribution and the same data + params always give the same (byte-identical) arrays.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tasks.ingest import IngestError, read_manifest
from tasks.params import ParamsError, load_params, section
from tasks.paths import DATA_DIR, PARAMS_FILE, PREPARED_META_FILE, SPLITS_FILE

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class Splits:
    """Images as uint8 (N, H, W, C) and int64 labels per split, plus source file paths."""

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    paths: dict[str, np.ndarray]


def list_images(data_dir: Path, class_names: list[str]) -> tuple[list[Path], np.ndarray]:
    """Image files in class order, then file-name order, with their class indices."""
    files: list[Path] = []
    labels: list[int] = []
    for label, class_name in enumerate(class_names):
        class_files = sorted((data_dir / class_name).glob("*.png"))
        files.extend(class_files)
        labels.extend([label] * len(class_files))
    return files, np.asarray(labels, dtype=np.int64)


def decode_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        array = np.asarray(image, dtype=np.uint8)
    return array[..., np.newaxis] if array.ndim == 2 else array


def decode_all(files: Sequence[Path]) -> np.ndarray:
    """Decode every file (threads: Pillow releases the GIL while decoding)."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        arrays = list(pool.map(decode_png, files, chunksize=256))
    shapes = {array.shape for array in arrays}
    if len(shapes) != 1:
        raise IngestError(f"images in the data folder have different shapes: {sorted(shapes)}")
    return np.stack(arrays)


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Index arrays per split; each class is shuffled and cut with the same fractions."""
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ParamsError(
            "params.yaml: prepare.val_fraction and prepare.test_fraction must be in (0, 1) "
            f"and sum below 1, got {val_fraction} and {test_fraction}"
        )
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = max(1, round(len(members) * test_fraction))
        n_val = max(1, round(len(members) * val_fraction))
        if n_test + n_val >= len(members):
            raise IngestError(
                f"class {label} has {len(members)} images: too few to split into train/val/test"
            )
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test : n_test + n_val])
        parts["train"].append(members[n_test + n_val :])
    return {split: np.sort(np.concatenate(parts[split])) for split in SPLITS}


def save_splits(splits: Splits, path: Path) -> None:
    """Write an .npz that np.load reads, byte-identical for identical arrays (fixed zip dates)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"x_{s}": splits.x[s] for s in SPLITS}
    arrays |= {f"y_{s}": splits.y[s] for s in SPLITS}
    arrays |= {f"paths_{s}": splits.paths[s] for s in SPLITS}
    temporary = path.with_suffix(".tmp")
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED) as archive:
        for key in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[key]))
            archive.writestr(
                zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buffer.getvalue()
            )
    os.replace(temporary, path)


def load_splits(path: Path = SPLITS_FILE) -> Splits:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `dvc repro prepare` first")
    with np.load(path, allow_pickle=False) as archive:
        return Splits(
            x={s: archive[f"x_{s}"] for s in SPLITS},
            y={s: archive[f"y_{s}"] for s in SPLITS},
            paths={s: archive[f"paths_{s}"] for s in SPLITS},
        )


def load_meta(path: Path = PREPARED_META_FILE) -> dict[str, object]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `dvc repro prepare` first")
    return json.loads(path.read_text())


def prepare(
    data_dir: Path, splits_file: Path, meta_file: Path, params: dict, seed: int
) -> dict[str, object]:
    """Decode data_dir, split it, write the arrays and their metadata; returns the metadata."""
    manifest = read_manifest(data_dir)
    class_names = [str(name) for name in manifest["class_names"]]
    files, labels = list_images(data_dir, class_names)
    if not files:
        raise IngestError(f"{data_dir} holds no images: run `imgflow ingest` first")
    images = decode_all(files)
    indices = stratified_split(
        labels, float(params["val_fraction"]), float(params["test_fraction"]), seed
    )
    relative = np.asarray([str(file.relative_to(data_dir)) for file in files])
    splits = Splits(
        x={s: images[i] for s, i in indices.items()},
        y={s: labels[i] for s, i in indices.items()},
        paths={s: relative[i] for s, i in indices.items()},
    )
    save_splits(splits, splits_file)
    meta = {
        "name": manifest["name"],
        "source": manifest["source"],
        "class_names": class_names,
        "image_shape": list(images.shape[1:]),
        "seed": seed,
        "counts": {
            s: np.bincount(splits.y[s], minlength=len(class_names)).tolist() for s in SPLITS
        },
    }
    meta_file.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=PARAMS_FILE)
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        meta = prepare(
            DATA_DIR,
            SPLITS_FILE,
            PREPARED_META_FILE,
            section(params, "prepare"),
            int(section(params, "seed")),
        )
    except (IngestError, ParamsError) as error:
        print(f"prepare failed: {error}", file=sys.stderr)
        return 1
    sizes = ", ".join(f"{s} {sum(meta['counts'][s])}" for s in SPLITS)
    print(f"prepared '{meta['name']}' {meta['image_shape']}: {sizes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
