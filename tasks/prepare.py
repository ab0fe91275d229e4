"""Prepare: decode the raw image folder once into train/val/test arrays and the image profile.

The split is stratified by class with the shared seed, so every split keeps the dataset's class
distribution and the same data + params always give the same (byte-identical) arrays.
The same single decode pass applies the declared image policy (`prepare.image_size`,
`color_mode`, aspect ratio rule; tasks/image_policy.py) and writes the per-image profile table
(tasks/profile.py) that the validate step checks; the files in data/ are never changed. Files
that cannot be used (decode failure, a shape other than the dataset's, a folder outside the
declared classes) are recorded there with split `excluded` and left out of the arrays instead
of stopping the run: validation then reports all of them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.atomic import atomic_path, write_json
from tasks.image_policy import ImagePolicy
from tasks.ingest import IngestError, read_manifest
from tasks.params import ParamsError, PrepareParams, load_section, load_seed
from tasks.paths import (
    DATA_DIR,
    PARAMS_FILE,
    PREPARED_META_FILE,
    PROFILE_FILE,
    SPLITS,
    SPLITS_FILE,
)
from tasks.profile import EXCLUDED, Profiled, build_profile, profile_files, write_profile


@dataclass(frozen=True)
class Splits:
    """Images as uint8 (N, H, W, C) and int64 labels per split, plus source file paths."""

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    paths: dict[str, np.ndarray]


def list_images(data_dir: Path, class_names: list[str]) -> tuple[list[Path], np.ndarray]:
    """PNG files of the declared classes in class order, then file-name order, with labels."""
    files: list[Path] = []
    labels: list[int] = []
    for label, class_name in enumerate(class_names):
        class_files = sorted((data_dir / class_name).glob("*.png"))
        files.extend(class_files)
        labels.extend([label] * len(class_files))
    return files, np.asarray(labels, dtype=np.int64)


def list_all_files(data_dir: Path, class_names: list[str]) -> tuple[list[Path], list[str]]:
    """Every non-hidden file under every class folder (declared first, then undeclared ones).

    Undeclared folders and non-PNG files are listed too, so the profile shows them instead
    of silently ignoring what someone dropped into data/.
    """
    declared = [data_dir / name for name in class_names]
    others = sorted(
        child
        for child in data_dir.iterdir()
        if child.is_dir() and child.name not in class_names and not child.name.startswith(".")
    )
    files: list[Path] = []
    folders: list[str] = []
    for folder in declared + others:
        if not folder.is_dir():
            continue
        found = sorted(_walk(folder))
        files.extend(found)
        folders.extend([folder.name] * len(found))
    return files, folders


def _walk(folder: Path) -> list[Path]:
    """Non-hidden files and symlinks below folder (os.scandir: no extra stat per file)."""
    found: list[Path] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                found.extend(_walk(Path(entry.path)))
            else:
                found.append(Path(entry.path))
    return found


def stratified_split(labels: np.ndarray, params: PrepareParams, seed: int) -> dict[str, np.ndarray]:
    """Index arrays per split; each class is shuffled and cut with the same fractions."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = max(1, round(len(members) * params.test_fraction))
        n_val = max(1, round(len(members) * params.val_fraction))
        if n_test + n_val >= len(members):
            # Too few to split: keep them for training; validation's per-class minimum flags it.
            parts["train"].append(members)
            continue
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test : n_test + n_val])
        parts["train"].append(members[n_test + n_val :])
    return {
        split: np.sort(np.concatenate(parts[split])) if parts[split] else np.zeros(0, np.int64)
        for split in SPLITS
    }


def save_splits(splits: Splits, path: Path) -> None:
    """Write an .npz that np.load reads, byte-identical for identical arrays (fixed zip dates)."""
    arrays = {f"x_{s}": splits.x[s] for s in SPLITS}
    arrays |= {f"y_{s}": splits.y[s] for s in SPLITS}
    arrays |= {f"paths_{s}": splits.paths[s] for s in SPLITS}
    with (
        atomic_path(path) as temporary,
        zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED) as archive,
    ):
        for key in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[key]))
            archive.writestr(
                zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buffer.getvalue()
            )


def load_splits(path: Path = SPLITS_FILE) -> Splits:
    """The arrays written by `prepare`; FileNotFoundError says which stage to run."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `dvc repro prepare` first")
    with np.load(path, allow_pickle=False) as archive:
        return Splits(
            x={s: archive[f"x_{s}"] for s in SPLITS},
            y={s: archive[f"y_{s}"] for s in SPLITS},
            paths={s: archive[f"paths_{s}"] for s in SPLITS},
        )


def load_meta(path: Path = PREPARED_META_FILE) -> dict[str, Any]:
    """The split metadata written by `prepare` (class names, image shape, counts, ...)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `dvc repro prepare` first")
    return json.loads(path.read_text())


def _split_images(
    profiled: Profiled,
    labels: np.ndarray,
    relative: np.ndarray,
    declared_shape: tuple[int, ...],
    params: PrepareParams,
    seed: int,
) -> tuple[Splits, np.ndarray, dict[str, np.ndarray]]:
    """Stratified splits of the decoded images of the manifest's shape and declared classes.

    Returns the splits, the file indices kept in them and, per split, which of those it holds.
    """
    members, stack = profiled.groups.get(
        declared_shape, (np.zeros(0, np.int64), np.zeros((0, *declared_shape), np.uint8))
    )
    declared = labels[members] >= 0  # files in undeclared folders stay out of the arrays
    kept, images = members[declared], stack[declared]
    indices = stratified_split(labels[kept], params, seed)
    splits = Splits(
        x={s: images[i] for s, i in indices.items()},
        y={s: labels[kept][i] for s, i in indices.items()},
        paths={s: relative[kept][i] for s, i in indices.items()},
    )
    return splits, kept, indices


def prepare(
    data_dir: Path,
    splits_file: Path,
    meta_file: Path,
    params: PrepareParams,
    seed: int,
    profile_file: Path | None = None,
) -> dict[str, Any]:
    """Decode data_dir once, split it, write the arrays, their metadata and the per-image
    profile (next to splits_file unless profile_file is given); returns the metadata."""
    manifest = read_manifest(data_dir)
    class_names = [str(name) for name in manifest["class_names"]]
    policy = ImagePolicy.from_params(params)
    declared_shape = policy.target_shape(manifest["image_shape"])
    files, folders = list_all_files(data_dir, class_names)
    if not files:
        raise IngestError(f"{data_dir} holds no images: run `imgflow ingest` first")
    profiled = profile_files(files, data_dir, policy=policy)
    labels = np.asarray(
        [class_names.index(f) if f in class_names else -1 for f in folders], dtype=np.int64
    )
    relative = np.asarray([str(file.relative_to(data_dir)) for file in files])
    profile = build_profile(relative.tolist(), labels.tolist(), folders, profiled)
    splits, kept, indices = _split_images(profiled, labels, relative, declared_shape, params, seed)
    del profiled
    split_column = np.full(len(files), EXCLUDED, dtype=object)
    for name, index in indices.items():
        split_column[kept[index]] = name
    profile["split"] = split_column
    profile["split"] = profile["split"].astype("string")
    save_splits(splits, splits_file)
    write_profile(profile, profile_file or splits_file.parent / PROFILE_FILE.name)
    meta = {
        "name": manifest["name"],
        "source": manifest["source"],
        "class_names": class_names,
        "image_shape": list(declared_shape),
        "image_policy": policy.as_dict(),
        "seed": seed,
        "counts": {
            s: np.bincount(splits.y[s], minlength=len(class_names)).tolist() for s in SPLITS
        },
        "excluded": int(len(files) - len(kept)),
    }
    write_json(meta_file, meta)
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=PARAMS_FILE)
    args = parser.parse_args(argv)
    try:
        params = load_section(PrepareParams, "prepare", args.params)
        seed = load_seed(args.params)
        meta = prepare(DATA_DIR, SPLITS_FILE, PREPARED_META_FILE, params, seed)
    except (IngestError, ParamsError) as error:
        print(f"prepare failed: {error}", file=sys.stderr)
        return 1
    sizes = ", ".join(f"{s} {sum(meta['counts'][s])}" for s in SPLITS)
    excluded = (
        f"; {meta['excluded']} file(s) excluded, see {PROFILE_FILE}" if meta["excluded"] else ""
    )
    print(f"prepared '{meta['name']}' {meta['image_shape']}: {sizes}{excluded}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
