"""Evaluate: metric formulas on hand-checkable inputs."""

from __future__ import annotations

import numpy as np

from tasks.evaluate import classification_metrics, expected_calibration_error, frechet_distance


def test_perfectly_confident_correct_predictions() -> None:
    labels = np.array([0, 1, 2, 1])
    probabilities = np.eye(3)[labels]
    metrics = classification_metrics(probabilities, labels, ["a", "b", "c"])
    assert metrics["test_accuracy"] == 1.0 and metrics["macro_f1"] == 1.0
    assert metrics["expected_calibration_error"] == 0.0
    assert metrics["per_class"]["b"]["recall"] == 1.0


def test_calibration_error_of_an_overconfident_model() -> None:
    probabilities = np.array([[0.9, 0.1]] * 10)
    labels = np.array([0] * 5 + [1] * 5)  # 50 % right at 90 % confidence
    assert abs(expected_calibration_error(probabilities, labels) - 0.4) < 1e-9


def test_frechet_distance_is_zero_for_identical_sets_and_grows_with_shift() -> None:
    features = np.random.default_rng(0).normal(size=(500, 4))
    assert frechet_distance(features, features) < 1e-6
    shifted = frechet_distance(features, features + 3.0)
    assert abs(shifted - 36.0) < 1e-6  # squared mean shift: 4 dimensions x 3^2
