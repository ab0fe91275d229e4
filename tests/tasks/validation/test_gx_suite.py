"""Great Expectations runs the declared checks: outcomes per (check, level), Data Docs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from tasks.params import ValidateParams
from tasks.validation.facts import gather_facts
from tasks.validation.gx_suite import INFINITE_FIGURE, figure_frame, run_checks


def test_dataset_table_holds_each_figure_and_infinity_as_a_finite_number(
    validate_params: ValidateParams, make_profile: Callable[..., pd.DataFrame]
) -> None:
    facts = gather_facts(make_profile(4), ["a", "b"], [8, 8, 1], validate_params, None)
    frame = figure_frame(facts)
    assert list(frame.columns) == ["imbalance_ratio", "class_kl", "split_kl_max", "drift_kl_max"]
    assert frame.loc[0, "imbalance_ratio"] == INFINITE_FIGURE  # class b has no image
    assert frame.loc[0, "drift_kl_max"] == 0.0  # nothing accepted yet


def test_outcomes_follow_the_data_and_data_docs_are_built(
    tmp_path: Path, validate_params: ValidateParams, make_profile: Callable[..., pd.DataFrame]
) -> None:
    profile = make_profile(
        24,
        {
            0: {"error": "zero-byte file", "split": "excluded", "pixel_min": None,
                "pixel_max": None, "height": None, "width": None, "channels": None},
            **{i: {"label": 1, "label_name": "b"} for i in range(12, 24)},
            **{i: {"label": 1, "label_name": "b", "split": "val"} for i in range(20, 22)},
            **{i: {"label": 0, "label_name": "a", "split": "val"} for i in range(1, 3)},
        },
    )  # fmt: skip
    facts = gather_facts(profile, ["a", "b"], [8, 8, 1], validate_params, None)
    passed = run_checks(validate_params, facts, tmp_path / "docs")
    assert passed[("decodes", None)] is False
    assert passed[("image_shape", None)] and passed[("label_set", None)]
    assert passed[("imbalance_ratio", "error")] and passed[("imbalance_ratio", "warning")]
    assert passed[("classes_present", None)]
    assert passed[("min_images_per_class", None)] is False  # 9 training images of a, not 10
    assert (tmp_path / "docs" / "index.html").is_file()
    assert sorted(p.name for p in (tmp_path / "docs" / "expectations").iterdir()) == [
        "classes_suite.html",
        "dataset_suite.html",
        "images_suite.html",
    ]
