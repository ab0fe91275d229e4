"""Issue 15, end to end: a class-per-folder tree of RGB JPEGs of different sizes (made here, no
download) runs through `dvc repro` to registered models with a declared image policy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

pytestmark = pytest.mark.pipeline

CLASSES = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}


def photo_tree(folder: Path, per_class: int = 30) -> Path:
    """RGB JPEGs of random sizes (12..48 a side): a class-coloured disc on a noisy background."""
    rng = np.random.default_rng(0)
    for name, colour in CLASSES.items():
        (folder / name).mkdir(parents=True)
        for index in range(per_class):
            height, width = (int(v) for v in rng.integers(12, 49, size=2))
            pixels = rng.integers(0, 90, (height, width, 3)).astype(np.float32)
            rows, cols = np.ogrid[:height, :width]
            disc = (rows - height / 2) ** 2 + (cols - width / 2) ** 2 < (
                min(height, width) / 3
            ) ** 2
            pixels[disc] = colour
            Image.fromarray(pixels.astype(np.uint8)).save(folder / name / f"{index}.jpg")
    return folder


@pytest.mark.slow
def test_mixed_size_rgb_jpegs_run_to_registered_models(
    repo_copy: Path, tmp_path: Path, registered_versions: Callable[[str], dict[str, list[str]]]
) -> None:
    from tasks.ingest import ensure_dataset

    params = yaml.safe_load(Path("params.yaml").read_text())
    params["prepare"].update(image_size=[16, 16], color_mode="rgb")
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ensure_dataset("folder", photo_tree(tmp_path / "photos"), name="photos", repo_root=repo_copy)
    assert {file.suffix for file in Path("data/red").iterdir()} == {".jpg"}  # kept as they are

    result = subprocess.run(
        [sys.executable, "-m", "dvc", "repro"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    meta = json.loads(Path("artifacts/prepared/meta.json").read_text())
    assert meta["image_shape"] == [16, 16, 3] and meta["excluded"] == 0
    validation = json.loads(Path("metrics/validation.json").read_text())
    assert validation["success"] and len(validation["source_sizes"]) > 20  # many sizes
    assert validation["source_modes"] == {"RGB": 90}
    versions = registered_versions(os.environ["MLFLOW_TRACKING_URI"])
    assert versions == {"photos-cnn": ["1"], "photos-rnn": ["1"], "photos-gan": ["1"]}
