"""Everything the checks look at, computed once from the profile: the per-image table with its
flags, class counts, class-distribution figures, duplicates and drift.

The Great Expectations suite validates these tables and the report quotes these values, so the
two can never disagree about what was measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.params import ValidateParams
from tasks.paths import SPLITS
from tasks.validation.drift import NO_BASELINE, drift_figures, summarise
from tasks.validation.duplicates import Duplicates, flag_duplicates
from tasks.validation.report import ValidationError
from tasks.validation.stats import imbalance_ratio, kl_divergence

if TYPE_CHECKING:
    import pandas as pd

UNIFORM = "uniform"
ACCEPTED = "accepted"
MAX_UPSCALE = 4.0  # linear enlargement by the image policy above which an image is reported
MAX_SIZES_LISTED = 20  # source sizes listed in the report (the rest counted as "other")


@dataclass(frozen=True)
class Facts:
    """The measured dataset. ``images`` is the profile plus the boolean columns blank,
    upscaled, exact_leak, dup_within_split and near_leak; counts are per declared class.
    ``source_sizes`` and ``source_modes`` count the decoded files by their own size (HxW) and
    colour mode, before the image policy."""

    images: pd.DataFrame
    class_names: list[str]
    image_shape: tuple[int, int, int]
    usable_images: int
    train_counts: np.ndarray  # the training split (all usable images when it is empty)
    all_counts: np.ndarray  # every split
    expected_source: str  # what the class KL compares with: uniform, or the accepted version
    class_kl: float
    imbalance: float
    split_kl: dict[str, float]
    drift: dict[str, float] | str
    duplicates: Duplicates
    source_sizes: dict[str, int]
    source_modes: dict[str, int]

    @property
    def classes(self) -> pd.DataFrame:
        """One row per declared class: its name, training and total image counts."""
        import pandas as pd

        return pd.DataFrame(
            {
                "class_name": self.class_names,
                "train_count": self.train_counts,
                "count": self.all_counts,
            }
        )


def gather_facts(
    profile: pd.DataFrame,
    class_names: list[str],
    image_shape: Sequence[int],
    params: ValidateParams,
    accepted: Mapping[str, Any] | None,
) -> Facts:
    """Measure the profile once for every check; ValidationError when there is nothing to
    measure (no declared class, no image)."""
    if not class_names:
        raise ValidationError("class_names is empty: meta.json must declare at least one class")
    if profile.empty:
        raise ValidationError("the dataset is empty: the profile has no images")
    k = len(class_names)
    table = _with_policy_columns(profile.copy())
    table["blank"] = (table["pixel_min"] == table["pixel_max"]).fillna(False)
    table["upscaled"] = (table["upscale"] > MAX_UPSCALE).fillna(False).astype(bool)
    duplicates = flag_duplicates(table, params.near_duplicate_distance)
    usable = table[table["split"].isin(SPLITS)]
    train = usable[usable["split"] == "train"]
    if train.empty:
        train = usable
    train_counts = np.bincount(train["label"].to_numpy(np.int64), minlength=k)[:k]
    all_counts = np.bincount(usable["label"].to_numpy(np.int64), minlength=k)[:k]
    expected, source = _expected_distribution(params, accepted, class_names)
    drift: dict[str, float] | str = NO_BASELINE
    if accepted:
        current = summarise(profile, class_names, (params.pixel_min, params.pixel_max))
        drift = drift_figures(current, accepted)
    height, width, channels = (int(v) for v in image_shape)
    return Facts(
        images=table,
        class_names=class_names,
        image_shape=(height, width, channels),
        usable_images=len(usable),
        train_counts=train_counts,
        all_counts=all_counts,
        expected_source=source,
        class_kl=kl_divergence(train_counts, expected),
        imbalance=imbalance_ratio(train_counts.tolist()),
        split_kl=_split_kl(usable, all_counts),
        drift=drift,
        duplicates=duplicates,
        **_source_distribution(table),
    )


def _with_policy_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The image-policy columns, filled in for a profile written before they existed."""
    defaults = {
        "source_width": table["width"],
        "source_height": table["height"],
        "upscale": 1.0,
        "blank_after_resize": False,
        "mode": None,
    }
    for column, value in defaults.items():
        if column not in table:
            table[column] = value
    table["upscale"] = table["upscale"].astype("float64")
    table["blank_after_resize"] = table["blank_after_resize"].fillna(False).astype(bool)
    return table


def _source_distribution(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Counts of the decoded files by source size (most common first) and colour mode."""
    decoded = table[table["error"].isna() & table["source_height"].notna()]
    sizes = (
        decoded["source_height"].astype(str) + "x" + decoded["source_width"].astype(str)
    ).value_counts()
    listed = {str(size): int(n) for size, n in sizes.head(MAX_SIZES_LISTED).items()}
    if len(sizes) > MAX_SIZES_LISTED:
        listed["other"] = int(sizes.iloc[MAX_SIZES_LISTED:].sum())
    modes = decoded["mode"].astype("string").fillna("unknown").value_counts()
    return {
        "source_sizes": listed,
        "source_modes": {str(mode): int(n) for mode, n in modes.items()},
    }


def _expected_distribution(
    params: ValidateParams, accepted: Mapping[str, Any] | None, class_names: list[str]
) -> tuple[np.ndarray, str]:
    """The class distribution the training split should follow, and where it comes from."""
    k = len(class_names)
    if params.expected_distribution != ACCEPTED or not accepted:
        return np.full(k, 1.0 / k), UNIFORM
    if list(accepted.get("class_names", [])) != class_names:
        return np.full(k, 1.0 / k), "uniform (accepted version has other classes)"
    weights = np.asarray(accepted["class_counts"], np.float64)
    return weights / max(weights.sum(), 1), ACCEPTED


def _split_kl(usable: pd.DataFrame, all_counts: np.ndarray) -> dict[str, float]:
    """KL(each split's class distribution || the whole dataset's), for the splits present."""
    k = len(all_counts)
    return {
        split: kl_divergence(
            np.bincount(usable.loc[usable["split"] == split, "label"], minlength=k)[:k], all_counts
        )
        for split in SPLITS
        if (usable["split"] == split).any()
    }
