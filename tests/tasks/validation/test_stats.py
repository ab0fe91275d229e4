"""Class-distribution figures: KL divergences, imbalance ratio, balanced class weights."""

from __future__ import annotations

import math

import pytest

from tasks.validation.stats import (
    compute_class_weights,
    imbalance_ratio,
    kl_divergence,
    kl_divergence_from_uniform,
    smoothed_kl,
)


def test_kl_divergence_in_nats_and_infinite_where_expected_has_no_mass() -> None:
    assert kl_divergence_from_uniform([10, 10]) == 0.0
    assert kl_divergence_from_uniform([30, 10]) == pytest.approx(
        0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    )
    assert kl_divergence([1, 0], [1, 1]) == pytest.approx(math.log(2))
    assert math.isinf(kl_divergence([1, 1], [1, 0]))
    assert math.isinf(kl_divergence([], []))


def test_smoothed_kl_is_finite_when_a_bin_empties() -> None:
    value = smoothed_kl([5, 5, 0], [0, 5, 5])
    assert math.isfinite(value) and value > 1.0
    assert smoothed_kl([3, 1], [6, 2]) == pytest.approx(0.0, abs=1e-12)


def test_imbalance_ratio_is_largest_over_smallest_and_infinite_for_an_empty_class() -> None:
    assert imbalance_ratio([60, 30, 20]) == 3.0
    assert math.isinf(imbalance_ratio([5, 0]))
    assert math.isinf(imbalance_ratio([]))


def test_class_weights_are_balanced_and_undefined_for_an_empty_class() -> None:
    weights = compute_class_weights({0: 10, 1: 20, 2: 70})
    assert weights == pytest.approx({"0": 100 / 30, "1": 100 / 60, "2": 100 / 210})
    with pytest.raises(ValueError, match="without images"):
        compute_class_weights({0: 5, 1: 0})
    with pytest.raises(ValueError, match="at least one class"):
        compute_class_weights({})
