"""Evaluate: metric formulas on hand-checkable inputs, a classifier whose predictions are set by
hand, and the GAN scores of a generator judged by a CNN."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tasks.evaluate import (
    classification_metrics,
    expected_calibration_error,
    write_metrics,
)
from tasks.params import EvaluateParams


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


def test_calibration_error_weights_each_bin_by_its_share() -> None:
    # Bin (0.6, 0.667]: 2 samples at 0.65, both right -> |1 - 0.65| = 0.35, weight 2/4.
    # Bin (0.933, 1.0]: 2 samples at 0.95, one right -> |0.5 - 0.95| = 0.45, weight 2/4.
    probabilities = np.array([[0.65, 0.35], [0.35, 0.65], [0.95, 0.05], [0.95, 0.05]])
    labels = np.array([0, 1, 0, 1])
    expected = 0.5 * 0.35 + 0.5 * 0.45
    assert expected_calibration_error(probabilities, labels) == pytest.approx(expected, abs=1e-12)


def _set_classifier(classes: int, confidence: float):
    """A Keras classifier whose prediction for an image is the index of its brightest pixel
    among the first `classes`, with probability `confidence` (the rest shared equally)."""
    import keras

    inputs = keras.Input(shape=(2, 2, 1))
    flat = keras.layers.Flatten()(inputs)
    dense = keras.layers.Dense(classes, activation="softmax", use_bias=False)
    outputs = dense(flat)
    # Logits of a one-hot 255 pixel: log-ratio of the winner to each other class.
    ratio = confidence / ((1 - confidence) / (classes - 1))
    kernel = np.zeros((4, classes), "float32")
    kernel[:classes, :classes] = np.eye(classes) * math.log(ratio) / 255.0
    dense.set_weights([kernel])
    return keras.Model(inputs, outputs)


def _images_predicted_as(predictions: list[int]) -> np.ndarray:
    images = np.zeros((len(predictions), 2, 2, 1), np.uint8)
    for index, predicted in enumerate(predictions):
        images[index].reshape(-1)[predicted] = 255
    return images


def test_score_classifier_gives_exact_metrics_of_known_predictions(tmp_path, monkeypatch):
    from tasks.evaluate import score_classifier

    monkeypatch.chdir(tmp_path)
    classifier = _set_classifier(classes=3, confidence=0.8)
    labels = np.array([0, 0, 1, 1, 2, 2])
    predicted = [0, 0, 1, 2, 2, 0]  # 4 of 6 right
    metrics = score_classifier(classifier, _images_predicted_as(predicted), labels, "abc")
    assert metrics["test_accuracy"] == pytest.approx(4 / 6, abs=1e-9)
    # Right: p = 0.8; wrong: the true class got (1 - 0.8) / 2 = 0.1.
    loss = (4 * -math.log(0.8) + 2 * -math.log(0.1)) / 6
    assert metrics["test_loss"] == pytest.approx(loss, rel=1e-5)
    assert metrics["expected_calibration_error"] == pytest.approx(0.8 - 4 / 6, abs=1e-5)
    # a: precision 2/3, recall 1; b: 1, 1/2; c: 1/2, 1/2.
    assert metrics["per_class"]["a"] == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "f1": 0.8}
    )
    assert metrics["per_class"]["b"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3}
    )
    assert metrics["per_class"]["c"]["f1"] == pytest.approx(0.5)
    assert metrics["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0.5) / 3)
    assert metrics["test_images"] == 6
    assert list(tmp_path.iterdir()) == []  # no file I/O


def test_metrics_file_is_rounded_sorted_and_ends_with_a_newline(tmp_path: Path) -> None:
    path = tmp_path / "metrics" / "cnn.json"
    write_metrics({"b": 0.123456789, "a": {"z": 1 / 3, "y": 2}}, path)
    text = '{\n  "a": {\n    "y": 2,\n    "z": 0.333333\n  },\n  "b": 0.123457\n}\n'
    assert path.read_text() == text


def _tiny_models():
    import keras

    from models import build_cnn, build_generator

    keras.utils.set_random_seed(0)
    judge = build_cnn((8, 8, 1), 3, filters=(4,), dense_units=6)
    generator = build_generator(4, 3, (8, 8, 1), base_filters=4)
    return judge, generator


def test_score_generator_reports_recognisability_coverage_and_frechet(tmp_path, monkeypatch):
    from tasks.evaluate import score_generator

    monkeypatch.chdir(tmp_path)
    judge, generator = _tiny_models()
    rng = np.random.default_rng(0)
    train = (rng.integers(0, 256, size=(40, 8, 8, 1)).astype("uint8"), np.arange(40) % 3)
    test = (rng.integers(0, 256, size=(20, 8, 8, 1)).astype("uint8"), np.arange(20) % 3)
    names = ["a", "b", "c"]
    # Confidence 1.0: an untrained softmax never gives a class all of it, so nothing counts.
    strict = EvaluateParams(gan_samples=30, confidence=1.0)
    none = score_generator(generator, judge, train, test, names, strict, seed=1)
    assert none["recognisable_share"] == 0.0 and none["classes_covered"] == 0
    # The smallest confidence: every sample counts, and 30 samples cycle through 3 classes.
    lenient = EvaluateParams(gan_samples=30, confidence=1e-9)
    every = score_generator(generator, judge, train, test, names, lenient, seed=1)
    assert every["recognisable_share"] == 1.0 and every["classes_covered"] == 3
    assert every["per_class_recognisable"] == {"a": 1.0, "b": 1.0, "c": 1.0}
    assert every["generated_images"] == 30 and every["classes_total"] == 3
    # Fidelity and diversity, overall and per class, next to real train images' values.
    for key in ("precision", "recall", "density", "coverage", "frechet_distance"):
        assert key in every and key in every["per_class"]["b"]
    for key in ("coverage_ceiling", "recall_ceiling", "frechet_floor", "frechet_ratio"):
        assert key in every and key in every["per_class"]["c"]
    assert 0.0 <= every["diversity_score"] <= 1.0
    assert every["min_class_coverage"] == min(c["coverage"] for c in every["per_class"].values())
    # The distances do not depend on the confidence, only on the samples (the seed).
    assert every["frechet_distance"] == none["frechet_distance"]
    assert every["diversity_score"] == none["diversity_score"]
    other_seed = score_generator(generator, judge, train, test, names, lenient, seed=2)
    assert other_seed["frechet_distance"] != every["frechet_distance"]
    assert list(tmp_path.iterdir()) == []


def test_nearest_real_figure_pairs_each_sample_with_a_training_image(tmp_path: Path) -> None:
    from PIL import Image

    from tasks.evaluate import save_nearest_real

    judge, _ = _tiny_models()
    train = np.random.default_rng(0).integers(0, 256, size=(12, 8, 8, 1)).astype("uint8")
    path = tmp_path / "nearest_real.png"
    # Samples that are training images: each is its own nearest neighbour, pairs identical.
    save_nearest_real(judge, train[[3, 7, 1, 0, 5, 9]].astype("float32"), train, path, columns=3)
    picture = np.asarray(Image.open(path))
    scale, gap = 4, 2  # save_pair_grid's defaults for 8-pixel-wide images
    assert picture.shape == (scale * (2 * 9 + 1), scale * (3 * (2 * 8 + 1 + gap) + 1))
    for row in range(2):
        for column in range(3):
            top, left = scale * (1 + row * 9), scale * (1 + column * (17 + gap))
            sample = picture[top : top + 32, left : left + 32]
            nearest = picture[top : top + 32, left + 36 : left + 68]
            np.testing.assert_array_equal(sample, nearest)


def test_generated_images_are_the_generators_output_mapped_to_pixels() -> None:
    from models.gan import tanh_to_pixels
    from tasks.evaluate import generate_images, latent_interpolation

    _, generator = _tiny_models()
    noise = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
    labels = np.array([0, 1, 2, 0, 1, 2])
    raw = generator.predict([noise, labels.reshape(-1, 1).astype("int32")], verbose=0)
    np.testing.assert_allclose(generate_images(generator, noise, labels), tanh_to_pixels(raw))
    strip = latent_interpolation(generator, classes=3, steps=5, seed=0)
    assert strip.shape == (15, 8, 8, 1)
    # Row k interpolates between two noise vectors for class k: its ends are those vectors.
    start, end = np.random.default_rng(0).normal(size=(2, 3, 1, 4))
    first = generate_images(generator, start[1], np.array([1]))
    np.testing.assert_allclose(strip[5], first[0], atol=1e-4)
    last = generate_images(generator, end[2], np.array([2]))
    np.testing.assert_allclose(strip[14], last[0], atol=1e-4)
