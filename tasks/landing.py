"""New data: merge labelled images from a landing folder (one sub-folder per class) into data/.

Every landing file is decoded and checked against the current dataset (known class, same image
shape) before anything is written, so a bad batch changes nothing. Merged files move to
`<landing>/.processed/<batch>/`, so the next run sees only what arrived since.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tasks.atomic import atomic_path, write_json
from tasks.ingest import IngestError, decode_image, read_manifest
from tasks.paths import DATA_DIR, IMAGE_SUFFIXES, MANIFEST_NAME

PROCESSED_DIR = ".processed"


@dataclass(frozen=True)
class LandingBatch:
    files: int
    per_class: dict[str, int]
    processed_dir: Path | None


def pending_files(landing_dir: Path) -> list[Path]:
    """Image files waiting in the landing folder's class sub-folders."""
    if not landing_dir.is_dir():
        return []
    return sorted(
        file
        for class_dir in landing_dir.iterdir()
        if class_dir.is_dir() and class_dir.name != PROCESSED_DIR
        for file in class_dir.rglob("*")
        if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES
    )


def merge_landing(landing_dir: Path, data_dir: Path = DATA_DIR) -> LandingBatch:
    """Append pending landing images to data_dir as new PNGs; returns what was merged."""
    files = pending_files(landing_dir)
    if not files:
        return LandingBatch(0, {}, None)
    manifest = read_manifest(data_dir)
    decoded = decode_batch(files, landing_dir, manifest)
    per_class = append_images(decoded, data_dir)
    counts = manifest.get("class_counts", {})
    for class_name, added in per_class.items():
        counts[class_name] = int(counts.get(class_name, 0)) + added
    manifest["class_counts"] = counts
    manifest["count"] = int(manifest["count"]) + len(decoded)
    write_json(data_dir / MANIFEST_NAME, manifest)
    processed = landing_dir / PROCESSED_DIR / time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    for file in files:
        destination = processed / file.relative_to(landing_dir)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(file), destination)
    return LandingBatch(len(decoded), per_class, processed)


def decode_batch(
    files: list[Path], landing_dir: Path, manifest: dict[str, Any]
) -> list[tuple[str, np.ndarray]]:
    """(class name, pixels) of every landing file; IngestError on the first unusable one.

    Nothing is written before every file passed: a bad batch changes nothing.
    """
    class_names = [str(name) for name in manifest["class_names"]]
    expected_shape = tuple(manifest["image_shape"])
    decoded: list[tuple[str, np.ndarray]] = []
    for file in files:
        class_name = file.relative_to(landing_dir).parts[0]
        if class_name not in class_names:
            raise IngestError(
                f"{file}: class folder '{class_name}' is not one of the dataset's classes "
                f"{class_names}; move it out of {landing_dir} or re-ingest with the new class"
            )
        image = decode_image(file, landing_dir.resolve())  # refuses symlinks escaping it
        if image.shape != expected_shape:
            raise IngestError(
                f"{file}: image shape {image.shape} differs from the dataset's {expected_shape}"
            )
        decoded.append((class_name, image))
    return decoded


def append_images(decoded: list[tuple[str, np.ndarray]], data_dir: Path) -> dict[str, int]:
    """Write each image as the next numbered PNG of its class folder; returns counts per class."""
    per_class: dict[str, int] = {}
    for class_name, image in decoded:
        existing = sorted((data_dir / class_name).glob("*.png"))
        next_index = int(existing[-1].stem) + 1 if existing else 0
        picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        with atomic_path(data_dir / class_name / f"{next_index:05d}.png") as temporary:
            picture.save(temporary, "PNG")
        per_class[class_name] = per_class.get(class_name, 0) + 1
    return per_class
