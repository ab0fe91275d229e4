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


def _tiny_models():
    import keras

    from models import build_cnn, build_generator

    keras.utils.set_random_seed(0)
    judge = build_cnn((8, 8, 1), 3, filters=(4,), dense_units=6)
    generator = build_generator(4, 3, (8, 8, 1), base_filters=4)
    return judge, generator


def test_score_classifier_returns_the_metrics_dict_without_writing_files(tmp_path, monkeypatch):
    from tasks.evaluate import score_classifier

    monkeypatch.chdir(tmp_path)
    judge, _ = _tiny_models()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(30, 8, 8, 1)).astype("uint8")
    labels = rng.integers(0, 3, size=30)
    metrics = score_classifier(judge, images, labels, ["a", "b", "c"])
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["test_images"] == 30 and set(metrics["per_class"]) == {"a", "b", "c"}
    assert list(tmp_path.iterdir()) == []


def test_score_generator_reports_recognisability_coverage_and_frechet(tmp_path, monkeypatch):
    from tasks.evaluate import latent_interpolation, score_generator

    monkeypatch.chdir(tmp_path)
    judge, generator = _tiny_models()
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, size=(40, 8, 8, 1)).astype("uint8")
    x_test = rng.integers(0, 256, size=(20, 8, 8, 1)).astype("uint8")
    params = {"gan_samples": 30, "confidence": 0.0}  # confidence 0: every sample counts
    metrics = score_generator(generator, judge, x_train, x_test, ["a", "b", "c"], params, seed=1)
    assert metrics["recognisable_share"] == 1.0 and metrics["classes_covered"] == 3
    assert metrics["frechet_distance"] >= 0.0 and metrics["frechet_floor"] >= 0.0
    again = score_generator(generator, judge, x_train, x_test, ["a", "b", "c"], params, seed=1)
    assert again == metrics
    assert list(tmp_path.iterdir()) == []
    strip = latent_interpolation(generator, classes=3, steps=5, seed=0)
    assert strip.shape == (15, 8, 8, 1) and strip.min() >= 0.0 and strip.max() <= 255.0
