"""Prepare: stratified, seeded, byte-deterministic splits and a profile of every file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.params import ParamsError, PrepareParams, parse_section
from tasks.prepare import load_meta, load_splits, prepare, stratified_split


def test_split_cuts_each_class_with_the_fractions_exactly() -> None:
    labels = np.repeat(np.arange(4), [100, 50, 30, 20])
    params = PrepareParams(val_fraction=0.1, test_fraction=0.2)
    splits = stratified_split(labels, params, seed=7)
    joined = np.concatenate(list(splits.values()))
    assert sorted(joined.tolist()) == list(range(len(labels)))  # disjoint and complete
    # Per class: test = round(n * 0.2), val = round(n * 0.1), train = the rest.
    assert np.bincount(labels[splits["test"]]).tolist() == [20, 10, 6, 4]
    assert np.bincount(labels[splits["val"]]).tolist() == [10, 5, 3, 2]
    assert np.bincount(labels[splits["train"]]).tolist() == [70, 35, 21, 14]
    other = stratified_split(labels, params, seed=8)
    assert not np.array_equal(splits["test"], other["test"])


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"val_fraction": 0.6, "test_fraction": 0.5}, r"prepare\.val_fraction \+ prepare\.test"),
        ({"val_fraction": 0.0, "test_fraction": 0.1}, r"prepare\.val_fraction: .*greater than 0"),
        ({"val_fraction": 0.1}, r"prepare\.test_fraction is missing"),
    ],
)
def test_bad_fractions_name_the_params_keys(section: dict, message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        parse_section(PrepareParams, section, "prepare")


def test_prepare_cli_fails_naming_the_key_before_writing(repo_copy: Path, capsys) -> None:
    import yaml

    from tasks.prepare import main

    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["prepare"]["test_fraction"] = 1.5
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params))
    assert main([]) == 1
    assert "prepare.test_fraction" in capsys.readouterr().err
    assert not (repo_copy / "artifacts").exists()


def test_prepare_writes_identical_bytes_for_identical_input(
    digits_data: Path, prepare_params: PrepareParams
) -> None:
    root = digits_data.parent
    outputs = []
    for run in ("a", "b"):
        splits, meta = root / run / "splits.npz", root / run / "meta.json"
        prepare(digits_data, splits, meta, prepare_params, seed=42)
        outputs.append(
            (splits.read_bytes(), meta.read_bytes(), (root / run / "profile.parquet").read_bytes())
        )
    assert outputs[0] == outputs[1]
    loaded = load_splits(root / "a" / "splits.npz")
    assert loaded.x["train"].dtype == np.uint8 and loaded.x["train"].shape[1:] == (8, 8, 1)
    sizes = {split: len(loaded.y[split]) for split in ("train", "val", "test")}
    assert sizes == {"train": 1439, "val": 179, "test": 179}
    meta = load_meta(root / "a" / "meta.json")
    assert meta["counts"]["test"] == np.bincount(loaded.y["test"]).tolist()
    assert meta["seed"] == 42 and meta["excluded"] == 0 and meta["image_shape"] == [8, 8, 1]
    assert meta_text_ends_with_newline(root / "a" / "meta.json")


def meta_text_ends_with_newline(path: Path) -> bool:
    text = path.read_text()
    return text.endswith("}\n") and text.startswith('{\n  "class_names"')


def test_prepare_writes_profile_and_records_unusable_files(
    digits_data: Path, prepare_params: PrepareParams
) -> None:
    from tasks.profile import read_profile

    root = digits_data.parent
    (digits_data / "3" / "broken.png").write_bytes(b"not a png")
    (digits_data / "extra").mkdir()
    (digits_data / "extra" / "x.png").write_bytes((digits_data / "0" / "00000.png").read_bytes())
    meta = prepare(digits_data, root / "splits.npz", root / "meta.json", prepare_params, 42)
    profile = read_profile(root / "profile.parquet")
    assert len(profile) == 1799 and meta["excluded"] == 2
    broken = profile[profile["path"] == "3/broken.png"].iloc[0]
    assert broken["split"] == "excluded" and "not an image" in broken["error"]
    extra = profile[profile["path"] == "extra/x.png"].iloc[0]
    assert extra["label"] == -1 and extra["split"] == "excluded" and extra["error"] is pd.NA
    loaded = load_splits(root / "splits.npz")
    assert sum(len(v) for v in loaded.y.values()) == 1797
    used = profile[profile["split"] != "excluded"]
    assert sorted(used["path"]) == sorted(np.concatenate(list(loaded.paths.values())).tolist())
    test_rows = profile[profile["split"] == "test"]
    assert sorted(test_rows["path"]) == sorted(loaded.paths["test"].tolist())


def test_too_small_class_goes_to_train_instead_of_crashing() -> None:
    labels = np.repeat([0, 1], [50, 2])
    splits = stratified_split(labels, PrepareParams(val_fraction=0.1, test_fraction=0.1), seed=0)
    assert (labels[splits["train"]] == 1).sum() == 2
    assert (labels[splits["test"]] == 0).sum() == 5 and (labels[splits["val"]] == 0).sum() == 5
