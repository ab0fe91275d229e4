"""Validation of images under the image policy (issue 15): the source size and mode distribution
in the report, upscaling and blank-after-resize warnings with their paths, and the one-line
params.yaml fix when sizes differ and no policy is declared."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from tasks.ingest import ingest
from tasks.params import PrepareParams
from tasks.paths import PARAMS_FILE, PREPARED_META_FILE, SPLITS_FILE, VALIDATION_METRICS
from tasks.prepare import prepare
from tasks.validate import ValidationError, run_validation
from tasks.validation.report import validation_markdown


def mixed_source(folder: Path) -> Path:
    """Three classes of 12 RGB JPEG/PNG files of three sizes; class c holds one 6x6 image
    (enlarged 8x by a 48x48 policy) and one 2000x2000 image of a 1-pixel line (blank at 48x48)."""
    rng = np.random.default_rng(0)
    for label in ("a", "b", "c"):
        (folder / label).mkdir(parents=True)
        for index in range(12):
            side = (40, 64, 50)[index % 3]
            pixels = rng.integers(0, 256, (side, side + 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / label / f"{index:02d}.jpg", quality=90)
    Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(folder / "c" / "tiny.png")
    line = np.zeros((2000, 2000), np.uint8)
    line[1000] = 255
    Image.fromarray(line).save(folder / "c" / "line.png")
    return folder


def front(root: Path, params_data: dict[str, Any], docs: Path | None = None, **policy: Any) -> dict:
    """prepare with `policy` + validate as the stages do (Data Docs in `docs`); returns
    metrics/validation.json."""
    params_data["prepare"].update(policy)
    (root / PARAMS_FILE).write_text(yaml.safe_dump(params_data))
    prepare_params = PrepareParams(**params_data["prepare"])
    prepare(root / "data", root / SPLITS_FILE, root / PREPARED_META_FILE, prepare_params, 42)
    try:
        run_validation(root, data_docs_dir=docs)
    except ValidationError as error:
        return json.loads((root / VALIDATION_METRICS).read_text()) | {"message": str(error)}
    return json.loads((root / VALIDATION_METRICS).read_text())


def check(report: dict, name: str) -> dict:
    return next(c for c in report["checks"] if c["name"] == name)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    ingest("folder", mixed_source(tmp_path / "src"), tmp_path / "repo" / "data")
    return tmp_path / "repo"


def test_mixed_sizes_without_a_policy_fail_with_the_params_fix(
    root: Path, params_data: dict[str, Any]
) -> None:
    report = front(root, params_data)
    assert report["success"] is False and "image_shape" in report["failed_checks"]
    assert (
        "add `image_size: [40, 48]` and `color_mode: rgb` under `prepare:` in params.yaml"
        in (report["message"])
    )


def test_policy_passes_and_reports_sources_upscaling_and_blank_images(
    root: Path, params_data: dict[str, Any]
) -> None:
    report = front(root, params_data, root / "docs", image_size=[48, 48], color_mode="rgb")
    assert report["success"] is True
    assert report["source_sizes"] == {
        "40x48": 12,
        "64x72": 12,
        "50x58": 12,
        "6x6": 1,
        "2000x2000": 1,
    }
    assert report["source_modes"] == {"RGB": 37, "L": 1}
    upscaling = check(report, "upscaling")
    assert upscaling["success"] is False and upscaling["severity"] == "warning"
    assert upscaling["offending"] == ["c/00013.png (x8)"]
    blank = check(report, "blank_after_resize")
    assert blank["severity"] == "warning" and blank["offending"] == ["c/00012.png"]
    assert any(line.startswith("upscaling [warning]") for line in report["warnings"])
    markdown = validation_markdown(report)
    assert "Source images by size (HxW):" in markdown
    assert "40x48 ############################## 12" in markdown
    assert "      6x6 ## 1\n" in markdown and "Source images by colour mode:" in markdown
    page = (root / "docs" / "source_images.html").read_text()  # the histogram in Data Docs
    assert "<td>40x48</td>" in page and "width:300px" in page and "<td>L</td>" in page
