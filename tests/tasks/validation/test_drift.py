"""Accepted-data summary and drift figures."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from tasks.validation.drift import HIST_BINS, drift_figures, load_accepted, summarise
from tasks.validation.report import ValidationError


def test_summary_counts_usable_images_per_class_and_bins_pixel_statistics(
    make_profile: Callable[..., pd.DataFrame],
) -> None:
    profile = make_profile(
        4,
        {
            1: {"label": 1, "label_name": "b", "pixel_mean": 250.0},
            3: {"split": "excluded", "error": "zero-byte file"},
        },
    )
    summary = summarise(profile, ["a", "b"], (0.0, 255.0))
    assert summary["class_counts"] == [2, 1] and summary["images"] == 3
    assert summary["pixel_range"] == [0.0, 255.0]
    assert len(summary["pixel_mean_hist"]) == HIST_BINS
    assert summary["pixel_mean_hist"][12] == 2 and summary["pixel_mean_hist"][-1] == 1
    assert summary["pixel_std_hist"][12] == 3  # std 50 of at most 127.5, 32 bins


def test_drift_is_zero_for_the_same_data_and_class_kl_infinite_for_other_classes(
    make_profile: Callable[..., pd.DataFrame],
) -> None:
    summary = summarise(make_profile(6), ["a"], (0.0, 255.0))
    assert drift_figures(summary, summary) == {
        "pixel_mean_kl": 0.0,
        "pixel_std_kl": 0.0,
        "class_kl": 0.0,
    }
    other = dict(summary, class_names=["x"])
    assert math.isinf(drift_figures(summary, other)["class_kl"])
    brighter = summarise(make_profile(6, {0: {"pixel_mean": 250.0}}), ["a"], (0.0, 255.0))
    assert drift_figures(brighter, summary)["pixel_mean_kl"] > 0.1


def test_load_accepted_names_a_corrupt_baseline(tmp_path: Path) -> None:
    assert load_accepted(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValidationError, match="delete it to reset"):
        load_accepted(tmp_path / "bad.json")
