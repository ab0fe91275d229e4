"""Duplicate finders: identical images within and across splits, near-duplicates across splits,
each reported with its file paths."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tasks.paths import PROFILE_FILE, VALIDATION_METRICS
from tasks.profile import hamming, read_profile
from tasks.validate import run_validation
from tasks.validation.duplicates import (
    close_hash_pairs,
    flag_duplicates,
    near_duplicates,
)


@pytest.mark.parametrize("k", [0, 1, 3, 6])
def test_close_hash_pairs_matches_brute_force(k: int) -> None:
    rng = np.random.default_rng(k)
    a = rng.integers(-(2**63), 2**63 - 1, size=400, dtype=np.int64)
    flips = rng.integers(0, 64, size=(400, 4)).astype(np.uint64)
    b = a.view(np.uint64).copy()
    for column in range(rng.integers(1, 5)):
        b ^= np.uint64(1) << flips[:, column]
    b = np.concatenate([b.view(np.int64), rng.integers(-(2**63), 2**63 - 1, 300, dtype=np.int64)])
    index_a, index_b, distance = close_hash_pairs(a, b, k)
    rows, cols = np.nonzero(hamming(a[:, None], b[None, :]) <= k)
    assert sorted(zip(index_a.tolist(), index_b.tolist(), strict=True)) == sorted(
        zip(rows.tolist(), cols.tolist(), strict=True)
    )
    assert np.all(distance <= k)


def test_near_duplicates_count_pairs_of_repeated_hashes_without_listing_them_all() -> None:
    a = np.array([0b1000, 0b1000, -1], dtype=np.int64)  # two images share a hash
    b = np.array([0b1001, 2**40, 0b1000], dtype=np.int64)
    found = near_duplicates(a, b, max_distance=1, max_examples=3)
    assert found.pairs == 4  # (0|1) x (b0 at distance 1, b2 at distance 0)
    assert found.in_a.tolist() == [True, True, False]
    assert found.in_b.tolist() == [True, False, True]
    assert len(found.examples) == 3
    assert {(i, j, d) for i, j, d in found.examples} <= {(0, 0, 1), (1, 0, 1), (0, 2, 0), (1, 2, 0)}
    empty = near_duplicates(a, np.zeros(0, dtype=np.int64), 4)
    assert empty.pairs == 0 and not empty.in_a.any()


def test_identical_images_are_grouped_by_split_with_their_paths(
    make_profile: Callable[..., pd.DataFrame],
) -> None:
    profile = make_profile(
        6,
        {
            0: {"sha256": "same"},
            1: {"sha256": "same", "split": "test"},
            2: {"sha256": "twin"},
            3: {"sha256": "twin"},
            5: {"sha256": "same", "split": "excluded"},  # not in the arrays: ignored
        },
    )
    found = flag_duplicates(profile, max_distance=0)
    assert found.exact == ["train:a/000.png = test:a/001.png"]
    assert found.within == ["a/002.png = a/003.png"]
    assert profile["exact_leak"].tolist() == [True, True, False, False, False, False]
    assert profile["dup_within_split"].tolist() == [False, False, True, True, False, False]
    assert found.near == [] and found.near_pairs == 0 and not profile["near_leak"].any()


def test_near_duplicate_pair_across_splits_is_reported_with_both_paths(
    folder_repo: Callable[..., Path],
) -> None:
    def add_near_copies(data: Path) -> None:
        for index in range(20):  # one pixel changed by 1: another sha256, nearly the same dhash
            pixels = np.asarray(Image.open(data / "a" / f"{index:05d}.png")).copy()
            pixels[3, 3] = pixels[3, 3] + 1 if pixels[3, 3] < 255 else 254
            Image.fromarray(pixels).save(data / "a" / f"near{index:02d}.png")

    root = folder_repo({"a": 40, "b": 60, "c": 60}, add_near_copies)
    report = run_validation(root, data_docs_dir=None)
    profile = read_profile(root / PROFILE_FILE).set_index("path")
    expected = []
    for index in range(20):
        original, copy = f"a/{index:05d}.png", f"a/near{index:02d}.png"
        first, second = sorted([original, copy], key=lambda p: "test val train".index(
            profile.loc[p, "split"]))  # fmt: skip
        split_a, split_b = profile.loc[first, "split"], profile.loc[second, "split"]
        distance = int(hamming(profile.loc[[first], "dhash"].to_numpy(np.int64),
                               profile.loc[[second], "dhash"].to_numpy(np.int64))[0])  # fmt: skip
        if split_a != split_b and distance <= 4:
            expected.append(f"{split_a}:{first} ~ {split_b}:{second} (distance {distance})")
    assert expected, "the seeded split put no near-copy in another split than its original"

    near = next(check for check in report.checks if check.name == "near_leakage")
    assert not near.success and near.severity == "warning" and report.success
    assert near.observed == len(expected) == near.offending_count
    assert sorted(near.offending) == sorted(expected)
    written = json.loads((root / VALIDATION_METRICS).read_text())
    listed = next(c for c in written["checks"] if c["name"] == "near_leakage")["offending"]
    assert sorted(listed) == sorted(expected)
