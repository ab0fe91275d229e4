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


def mixed_rgb_jpegs(folder: Path, per_class: int = 12) -> Path:
    """A class-per-folder tree of RGB JPEGs of several sizes (one tiny one per class)."""
    from PIL import Image

    rng = np.random.default_rng(3)
    sizes = [(30, 40), (64, 48), (25, 25), (100, 60)]
    for label in ("cats", "dogs"):
        (folder / label).mkdir(parents=True)
        for index in range(per_class):
            height, width = sizes[index % len(sizes)] if index else (4, 5)
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / label / f"{index}.jpg", quality=90)
    return folder


def test_policy_resizes_mixed_rgb_jpegs_and_leaves_data_untouched(
    tmp_path: Path, tree_digest
) -> None:
    from tasks.ingest import ingest
    from tasks.profile import read_profile

    data = tmp_path / "data"
    ingest("folder", mixed_rgb_jpegs(tmp_path / "src"), data)
    before = tree_digest(data)
    policy = PrepareParams(
        val_fraction=0.2, test_fraction=0.2, image_size=[16, 24], color_mode="grayscale"
    )
    meta = prepare(data, tmp_path / "p" / "splits.npz", tmp_path / "p" / "meta.json", policy, 1)
    assert tree_digest(data) == before  # the policy applies to pixels, never to the files
    assert meta["image_shape"] == [16, 24, 1] and meta["excluded"] == 0
    assert meta["image_policy"]["image_size"] == [16, 24]
    loaded = load_splits(tmp_path / "p" / "splits.npz")
    assert {loaded.x[s].shape[1:] for s in loaded.x} == {(16, 24, 1)}
    profile = read_profile(tmp_path / "p" / "profile.parquet")
    assert set(zip(profile["source_height"], profile["source_width"], strict=True)) == {
        (30, 40),
        (64, 48),
        (25, 25),
        (100, 60),
        (4, 5),
    }
    assert set(profile["mode"]) == {"RGB"} and (profile["height"] == 16).all()
    assert profile.loc[profile["source_height"] == 4, "upscale"].tolist() == [4.8, 4.8]


def test_without_a_policy_mixed_sizes_are_kept_out_of_the_arrays(tmp_path: Path) -> None:
    from tasks.ingest import ingest

    data = tmp_path / "data"
    ingest("folder", mixed_rgb_jpegs(tmp_path / "src"), data)
    params = PrepareParams(val_fraction=0.2, test_fraction=0.2)
    meta = prepare(data, tmp_path / "splits.npz", tmp_path / "meta.json", params, 1)
    # The most common size (64x48: first of the three sizes with 3 images per class) is kept.
    assert meta["image_shape"] == [64, 48, 3] and meta["excluded"] == 18
