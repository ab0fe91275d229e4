"""Prepare: stratified, seeded, byte-deterministic splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.ingest import ingest
from tasks.params import ParamsError
from tasks.prepare import load_meta, load_splits, prepare, stratified_split

PARAMS = {"val_fraction": 0.1, "test_fraction": 0.1}


def test_split_is_stratified_disjoint_and_seeded() -> None:
    labels = np.repeat(np.arange(4), [100, 50, 30, 20])
    splits = stratified_split(labels, 0.1, 0.2, seed=7)
    joined = np.concatenate(list(splits.values()))
    assert sorted(joined.tolist()) == list(range(len(labels)))
    for indices, fraction in ((splits["val"], 0.1), (splits["test"], 0.2)):
        counts = np.bincount(labels[indices], minlength=4)
        np.testing.assert_allclose(counts, np.array([100, 50, 30, 20]) * fraction, atol=1)
    again = stratified_split(labels, 0.1, 0.2, seed=7)
    assert all(np.array_equal(splits[k], again[k]) for k in splits)
    other = stratified_split(labels, 0.1, 0.2, seed=8)
    assert not np.array_equal(splits["test"], other["test"])


def test_bad_fractions_name_the_params_keys() -> None:
    with pytest.raises(ParamsError, match=r"prepare\.val_fraction"):
        stratified_split(np.zeros(10, int), 0.6, 0.5, seed=0)


def test_prepare_writes_identical_bytes_for_identical_input(tmp_path: Path) -> None:
    ingest("digits", None, tmp_path / "data")
    outputs = []
    for run in ("a", "b"):
        splits, meta = tmp_path / run / "splits.npz", tmp_path / run / "meta.json"
        prepare(tmp_path / "data", splits, meta, PARAMS, seed=42)
        outputs.append((splits.read_bytes(), meta.read_bytes()))
    assert outputs[0] == outputs[1]
    loaded = load_splits(tmp_path / "a" / "splits.npz")
    assert loaded.x["train"].dtype == np.uint8 and loaded.x["train"].shape[1:] == (8, 8, 1)
    assert sum(len(v) for v in loaded.y.values()) == 1797
    assert (
        load_meta(tmp_path / "a" / "meta.json")["counts"]["test"]
        == np.bincount(loaded.y["test"]).tolist()
    )


def test_prepare_writes_profile_and_records_unusable_files(tmp_path: Path) -> None:
    from tasks.profile import read_profile

    ingest("digits", None, tmp_path / "data")
    (tmp_path / "data" / "3" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "data" / "extra").mkdir()
    (tmp_path / "data" / "extra" / "x.png").write_bytes(
        (tmp_path / "data" / "0" / "00000.png").read_bytes()
    )
    meta = prepare(tmp_path / "data", tmp_path / "splits.npz", tmp_path / "meta.json", PARAMS, 42)
    profile = read_profile(tmp_path / "profile.parquet")
    assert len(profile) == 1799 and meta["excluded"] == 2
    broken = profile[profile["path"] == "3/broken.png"].iloc[0]
    assert broken["split"] == "excluded" and "not an image" in broken["error"]
    extra = profile[profile["path"] == "extra/x.png"].iloc[0]
    assert extra["label"] == -1 and extra["split"] == "excluded" and extra["error"] is pd_na()
    loaded = load_splits(tmp_path / "splits.npz")
    assert sum(len(v) for v in loaded.y.values()) == 1797
    used = profile[profile["split"] != "excluded"]
    assert sorted(used["path"]) == sorted(np.concatenate(list(loaded.paths.values())).tolist())


def pd_na():
    import pandas as pd

    return pd.NA


def test_too_small_class_goes_to_train_instead_of_crashing() -> None:
    labels = np.repeat([0, 1], [50, 2])
    splits = stratified_split(labels, 0.1, 0.1, seed=0)
    assert (labels[splits["train"]] == 1).sum() == 2
