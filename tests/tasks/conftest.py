"""Fixtures of the data and training steps' tests: data produced by the code that produces the
real files (tasks.ingest, tasks.prepare), never hand-written arrays."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tasks.ingest import ingest
from tasks.params import PrepareParams, TrainParams, load_section, load_seed, parse_section
from tasks.paths import DATA_DIR, PARAMS_FILE, PREPARED_META_FILE, SPLITS_FILE
from tasks.prepare import prepare

PREPARE = PrepareParams(val_fraction=0.1, test_fraction=0.1)


@pytest.fixture
def prepare_params() -> PrepareParams:
    """The repository's split: 80/10/10."""
    return PREPARE


@pytest.fixture
def digits_data(tmp_path: Path) -> Path:
    """The bundled digits dataset (1797 8x8 images, 10 classes) ingested into tmp/data."""
    ingest("digits", None, tmp_path / "data")
    return tmp_path / "data"


@pytest.fixture
def prepared_repo(repo_copy: Path) -> Path:
    """repo_copy with its data split as the prepare stage splits it (its params and seed)."""
    params = load_section(PrepareParams, "prepare", repo_copy / PARAMS_FILE)
    seed = load_seed(repo_copy / PARAMS_FILE)
    prepare(
        repo_copy / DATA_DIR, repo_copy / SPLITS_FILE, repo_copy / PREPARED_META_FILE, params, seed
    )
    return repo_copy


@pytest.fixture
def tiny_train_params(repo_copy: Path) -> Callable[..., TrainParams]:
    """tiny_train_params(**cnn): repo_copy's train section, deterministic, with a 2-epoch CNN of
    one 4-filter block; keyword arguments override train.cnn keys."""

    def make(**cnn: object) -> TrainParams:
        params = yaml.safe_load((repo_copy / PARAMS_FILE).read_text())["train"]
        params["deterministic"] = True
        params["cnn"].update({"epochs": 2, "filters": [4], "dense_units": 8} | cnn)
        return parse_section(TrainParams, params, "train")

    return make
