"""Fixtures of the validation package's tests: typed params from the repository's params.yaml,
hand-made profile tables (the columns tasks/profile.py writes) and prepared folder datasets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tasks.ingest import ingest
from tasks.params import PrepareParams, ValidateParams, parse_section
from tasks.paths import PARAMS_FILE, PREPARED_META_FILE, SPLITS_FILE
from tasks.prepare import prepare

REPO_ROOT = Path(__file__).resolve().parents[3]
PROFILE_DTYPES = {
    "path": "string",
    "label": "int64",
    "label_name": "string",
    "split": "string",
    "error": "string",
    "channels": "Int64",
    "width": "Int64",
    "height": "Int64",
    "pixel_min": "float64",
    "pixel_max": "float64",
    "pixel_mean": "float64",
    "pixel_std": "float64",
    "sha256": "string",
    "dhash": "Int64",
}


@pytest.fixture
def params_data() -> dict[str, Any]:
    """The repository's params.yaml as plain data (a fresh copy per test)."""
    return yaml.safe_load((REPO_ROOT / PARAMS_FILE).read_text())


@pytest.fixture
def validate_params(params_data: dict[str, Any]) -> ValidateParams:
    """The repository's `validate` section, typed."""
    return parse_section(ValidateParams, params_data["validate"], "validate")


def _row(index: int, **values: Any) -> dict[str, Any]:
    """A decoded 8x8 grayscale image of class "a" in train, distinct sha256 and dhash."""
    row: dict[str, Any] = {
        "path": f"a/{index:03d}.png",
        "label": 0,
        "label_name": "a",
        "split": "train",
        "error": None,
        "channels": 1,
        "width": 8,
        "height": 8,
        "pixel_min": 0.0,
        "pixel_max": 200.0,
        "pixel_mean": 100.0,
        "pixel_std": 50.0,
        "sha256": f"sha{index}",
        "dhash": (index * 0x9E3779B97F4A7C15) % (2**63),  # far apart in Hamming distance
    }
    return row | values


@pytest.fixture
def make_profile() -> Callable[..., pd.DataFrame]:
    """make_profile(n, {index: {column: value}}): a profile of n healthy rows, some changed."""

    def make(count: int, changes: dict[int, dict[str, Any]] | None = None) -> pd.DataFrame:
        changes = changes or {}
        rows = [_row(index, **changes.get(index, {})) for index in range(count)]
        return pd.DataFrame(rows).astype(PROFILE_DTYPES)

    return make


@pytest.fixture
def folder_repo(
    tmp_path: Path, image_files: Any, params_data: dict[str, Any]
) -> Callable[..., Path]:
    """folder_repo(counts, edit=None): a repository of random PNGs per class, prepared as the
    prepare stage does; `edit(data_dir)` may add files before the split."""

    def make(counts: dict[str, int], edit: Callable[[Path], None] | None = None) -> Path:
        root = tmp_path / "repo"
        ingest("folder", image_files.write_source(tmp_path / "src", counts), root / "data")
        if edit is not None:
            edit(root / "data")
        (root / PARAMS_FILE).write_text(yaml.safe_dump(params_data))
        split = PrepareParams(**params_data["prepare"])
        prepare(root / "data", root / SPLITS_FILE, root / PREPARED_META_FILE, split, 42)
        return root

    return make
