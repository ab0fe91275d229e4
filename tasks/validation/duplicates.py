"""Duplicate finders over the profile: identical pixels (sha256) within and across splits, and
near-duplicates across splits (difference-hash Hamming distance), each reported with its paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tasks.paths import SPLITS
from tasks.profile import hamming
from tasks.validation.report import MAX_LISTED

if TYPE_CHECKING:
    import pandas as pd

# Split pairs compared for near-duplicates: each later split against the earlier ones.
SPLIT_PAIRS: tuple[tuple[str, str], ...] = (("val", "train"), ("test", "train"), ("test", "val"))


@dataclass(frozen=True)
class NearDuplicates:
    """Cross-set near-duplicates: which rows of each side have one, the pair count, examples."""

    in_a: np.ndarray
    in_b: np.ndarray
    pairs: int
    examples: list[tuple[int, int, int]]


@dataclass(frozen=True)
class Duplicates:
    """What the finders report: descriptions with paths (first MAX_LISTED) and counts."""

    exact: list[str]  # groups of identical images in more than one split ("split:path = ...")
    near: list[str]  # cross-split pairs ("val:path ~ train:path (distance d)")
    within: list[str]  # groups of identical images inside one split ("path = path")
    near_pairs: int


def near_duplicates(
    hashes_a: np.ndarray,
    hashes_b: np.ndarray,
    max_distance: int,
    max_examples: int = MAX_LISTED,
) -> NearDuplicates:
    """Pairs (i in a, j in b) whose hashes differ in at most max_distance bits.

    Works on unique hash values (small images often share a hash); pairs are counted from
    group sizes, never listed beyond the examples, so a dataset full of near-copies costs no
    more memory than a clean one.
    """
    in_a = np.zeros(len(hashes_a), dtype=bool)
    in_b = np.zeros(len(hashes_b), dtype=bool)
    if len(hashes_a) == 0 or len(hashes_b) == 0:
        return NearDuplicates(in_a, in_b, 0, [])
    unique_a, inverse_a, count_a = np.unique(hashes_a, return_inverse=True, return_counts=True)
    unique_b, inverse_b, count_b = np.unique(hashes_b, return_inverse=True, return_counts=True)
    ua, ub, distance = close_hash_pairs(unique_a, unique_b, max_distance)
    hit_a = np.zeros(len(unique_a), dtype=bool)
    hit_b = np.zeros(len(unique_b), dtype=bool)
    hit_a[ua] = True
    hit_b[ub] = True
    pairs = int(np.sum(count_a[ua].astype(np.int64) * count_b[ub]))
    first = zip(
        ua[:max_examples].tolist(),
        ub[:max_examples].tolist(),
        distance[:max_examples].tolist(),
        strict=True,
    )
    examples: list[tuple[int, int, int]] = []
    for group_a, group_b, hash_distance in first:
        for i in np.flatnonzero(inverse_a == group_a)[:max_examples]:
            for j in np.flatnonzero(inverse_b == group_b)[:max_examples]:
                if len(examples) < max_examples:
                    examples.append((int(i), int(j), int(hash_distance)))
    return NearDuplicates(hit_a[inverse_a], hit_b[inverse_b], pairs, examples)


def _band_keys(hashes: np.ndarray, band: int, bands: int) -> np.ndarray:
    """Bits band, band + bands, band + 2 * bands, ... of each hash packed into one key.

    Interleaved rather than contiguous bits: in a difference hash neighbouring bits come
    from one image row, and border rows are nearly constant, which would crowd one bucket.
    """
    raw = hashes.view(np.uint64)
    key = np.zeros(len(hashes), dtype=np.uint64)
    for position, bit in enumerate(range(band, 64, bands)):
        key |= ((raw >> np.uint64(bit)) & np.uint64(1)) << np.uint64(position)
    return key


def _band_candidates(
    key_a: np.ndarray, key_b: np.ndarray, chunk: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Index pairs (i, j) with key_a[i] == key_b[j], in chunks of `chunk` rows of a."""
    order = np.argsort(key_b, kind="stable")
    sorted_b = key_b[order]
    found = []
    for start in range(0, len(key_a), chunk):
        query = key_a[start : start + chunk]
        low = np.searchsorted(sorted_b, query, "left")
        sizes = np.searchsorted(sorted_b, query, "right") - low
        total = int(sizes.sum())
        if total == 0:
            continue
        index_a = np.repeat(np.arange(start, start + len(query)), sizes)
        within = np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        found.append((index_a, order[np.repeat(low, sizes) + within]))
    return found


def close_hash_pairs(
    a: np.ndarray, b: np.ndarray, max_distance: int, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All index pairs (i, j) with Hamming(a[i], b[j]) <= max_distance, sorted by (i, j).

    Multi-index hashing: split the 64 bits into max_distance + 1 bands; by the pigeonhole
    principle a close pair agrees exactly on at least one band, so only pairs sharing a band
    value are compared (instead of all len(a) x len(b)).
    """
    bands = min(max_distance + 1, 64)
    found_a, found_b, found_d = [], [], []
    for band in range(bands):
        key_a, key_b = _band_keys(a, band, bands), _band_keys(b, band, bands)
        for index_a, index_b in _band_candidates(key_a, key_b, chunk):
            distance = hamming(a[index_a], b[index_b])
            keep = distance <= max_distance
            found_a.append(index_a[keep])
            found_b.append(index_b[keep])
            found_d.append(distance[keep])
    if not found_a:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    index_a, index_b, distance = (np.concatenate(x) for x in (found_a, found_b, found_d))
    _, first = np.unique(index_a * len(b) + index_b, return_index=True)
    return index_a[first], index_b[first], distance[first].astype(np.int64)


def flag_duplicates(table: pd.DataFrame, max_distance: int) -> Duplicates:
    """Add the boolean columns exact_leak, dup_within_split and near_leak to ``table`` (the
    profile) and describe the offending groups and pairs with their paths."""
    used = table[table["split"].isin(SPLITS) & table["sha256"].notna()]
    exact, within = _flag_identical(table, used)
    near, near_pairs = _flag_near(table, used, max_distance)
    return Duplicates(exact=exact, near=near, within=within, near_pairs=near_pairs)


def _flag_identical(table: pd.DataFrame, used: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Identical pixels in more than one split (leak) and within one split (duplicate)."""
    splits_per_sha = used.groupby("sha256")["split"].nunique()
    leaked = used["sha256"].map(splits_per_sha).gt(1).to_numpy()
    table["exact_leak"] = False
    table.loc[used.index, "exact_leak"] = leaked
    within = used.duplicated(["split", "sha256"], keep=False).to_numpy()
    table["dup_within_split"] = False
    table.loc[used.index, "dup_within_split"] = within

    exact = [
        " = ".join(f"{row.split}:{row.path}" for row in group.itertuples())
        for _, group in used[leaked].groupby("sha256", sort=False)
    ]
    groups = [
        " = ".join(group["path"].tolist())
        for _, group in used[within].groupby(["split", "sha256"], sort=False)
    ]
    return exact, groups


def _flag_near(table: pd.DataFrame, used: pd.DataFrame, max_distance: int) -> tuple[list[str], int]:
    """Near-duplicate pairs across splits: the first MAX_LISTED with paths, and the count."""
    table["near_leak"] = False
    hashed = used[used["dhash"].notna()]
    by_split = {split: hashed[hashed["split"] == split] for split in SPLITS}
    near: list[str] = []
    pair_count = 0
    for first, second in SPLIT_PAIRS:
        a, b = by_split[first], by_split[second]
        found = near_duplicates(
            a["dhash"].to_numpy(np.int64), b["dhash"].to_numpy(np.int64), max_distance
        )
        pair_count += found.pairs
        table.loc[a.index[found.in_a], "near_leak"] = True
        table.loc[b.index[found.in_b], "near_leak"] = True
        for i, j, distance in found.examples[: MAX_LISTED - len(near)]:
            near.append(
                f"{first}:{a['path'].iat[i]} ~ {second}:{b['path'].iat[j]} (distance {distance})"
            )
    return near, pair_count
