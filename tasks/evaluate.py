"""Evaluate: score one trained model on the held-out test split.

Classifiers: accuracy, loss, macro-F1, per-class scores, calibration error, confusion matrix and
the worst-classified images. GAN: the share of generated images that the run's CNN recognises as
the requested class, the classes covered, and, in the CNN's feature space, how faithful and how
diverse the samples are (Frechet distance, precision/recall, density/coverage, overall and per
class, each next to the same measure of real train images: tasks.gan_metrics), plus a figure of
samples next to their nearest training images.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.atomic import atomic_path, write_json
from tasks.params import EvaluateParams, ParamsError, load_section, load_seed
from tasks.paths import (
    CLASSIFIERS,
    JUDGE_MODEL,
    MODEL_NAMES,
    PARAMS_FILE,
    PREPARED_META_FILE,
    SPLITS_FILE,
    confusion_plot_file,
    images_dir,
    model_file,
    model_metrics_file,
)

if TYPE_CHECKING:
    import keras

INTERPOLATION_STEPS = 10  # images per row of plots/images/gan/interpolation.png
NEAREST_PAIRS = 5  # (sample, nearest training image) pairs per class in nearest_real.png
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 15
) -> float:
    """ECE: mean |accuracy - confidence| over equal-width confidence bins, weighted by size."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    error = 0.0
    for low, high in itertools.pairwise(edges):
        members = (confidence > low) & (confidence <= high)
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def classification_metrics(
    probabilities: np.ndarray, labels: np.ndarray, class_names: list[str]
) -> dict[str, Any]:
    """Headline and per-class scores from predicted probabilities."""
    from sklearn.metrics import precision_recall_fscore_support

    predictions = probabilities.argmax(axis=1)
    picked = probabilities[np.arange(len(labels)), labels]
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predictions, labels=range(len(class_names)), zero_division=0
    )
    return {
        "test_accuracy": float((predictions == labels).mean()),
        "test_loss": float(-np.log(np.clip(picked, 1e-7, 1.0)).mean()),
        "macro_f1": float(f1.mean()),
        "expected_calibration_error": expected_calibration_error(probabilities, labels),
        "test_images": len(labels),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f)}
            for name, p, r, f in zip(class_names, precision, recall, f1, strict=True)
        },
    }


def predict_probabilities(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Class probabilities for raw 0..255 images, in batches."""
    return np.asarray(model.predict(images.astype("float32"), batch_size=256, verbose=0))


def score_classifier(
    model: keras.Model, x_test: np.ndarray, y_test: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Metrics of a classifier on a test set; no file I/O (also used on MLflow champions).

    Returns the same dict as metrics/<model>.json: test_accuracy (0..1), test_loss, macro_f1,
    expected_calibration_error, test_images and per_class precision/recall/F1.
    """
    probabilities = predict_probabilities(model, x_test)
    return classification_metrics(probabilities, np.asarray(y_test), list(class_names))


def evaluate_classifier(
    model: str, root: Path, x_test: np.ndarray, y_test: np.ndarray, class_names: list[str]
) -> dict[str, Any]:
    """Score a trained classifier and write its confusion matrix and worst-classified images."""
    import keras

    from tasks.figures import save_confusion_matrix, save_image_grid

    network = keras.models.load_model(model_file(model, root), safe_mode=True)
    probabilities = predict_probabilities(network, x_test)
    metrics = classification_metrics(probabilities, y_test, class_names)
    predictions = probabilities.argmax(axis=1)

    rows = [(class_names[a], class_names[p]) for a, p in zip(y_test, predictions, strict=True)]
    write_csv(confusion_plot_file(model, root), ["actual", "predicted"], rows)
    matrix = np.zeros((len(class_names), len(class_names)), dtype=np.int64)
    np.add.at(matrix, (y_test, predictions), 1)
    figures = images_dir(model, root)
    save_confusion_matrix(
        matrix,
        class_names,
        figures / "confusion_matrix.png",
        f"{model}: accuracy {metrics['test_accuracy']:.4f}",
    )
    worst = np.argsort(probabilities[np.arange(len(y_test)), y_test])[:16]
    save_image_grid(x_test[worst], figures / "worst_classified.png", columns=8)
    return metrics


def generate_images(generator: keras.Model, noise: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Run a generator (tanh output) on noise and integer labels; returns pixels in 0..255."""
    from models.gan import tanh_to_pixels

    images = generator.predict(
        [noise.astype("float32"), np.asarray(labels).reshape(-1, 1).astype("int32")],
        batch_size=256,
        verbose=0,
    )
    return tanh_to_pixels(images)


LabelledImages = tuple[np.ndarray, np.ndarray]  # (uint8 images (N, H, W, C), int labels (N,))


def embedding_model(judge: keras.Model) -> keras.Model:
    """The judge CNN cut at its "embedding" layer: the feature space every GAN distance uses."""
    import keras

    from models import EMBEDDING_LAYER_NAME

    return keras.Model(judge.inputs, judge.get_layer(EMBEDDING_LAYER_NAME).output)


def embed(features: keras.Model, images: np.ndarray) -> np.ndarray:
    """Feature rows of raw 0..255 images, in batches."""
    return np.asarray(features.predict(images.astype("float32"), batch_size=256, verbose=0))


def _score_generator(
    generator: keras.Model,
    judge: keras.Model,
    train: LabelledImages,
    test: LabelledImages,
    class_names: list[str],
    params: EvaluateParams,
    seed: int,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """score_generator's metrics plus the requested and recognised class of each sample."""
    from tasks.gan_metrics import diversity_metrics, matched_real_sample

    features = embedding_model(judge)
    classes = len(class_names)
    count = params.gan_samples
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % classes
    latent_dim = int(generator.inputs[0].shape[-1])
    noise = rng.normal(size=(count, latent_dim)).astype("float32")
    generated = generate_images(generator, noise, labels)

    probabilities = predict_probabilities(judge, generated)
    recognisable = probabilities[np.arange(count), labels] >= params.confidence
    covered = np.unique(labels[recognisable])
    metrics: dict[str, Any] = {
        "recognisable_share": float(recognisable.mean()),
        "classes_covered": len(covered),
        "classes_total": classes,
        "generated_images": count,
        "per_class_recognisable": {
            name: float(recognisable[labels == index].mean())
            for index, name in enumerate(class_names)
        },
    }
    # Every measure compares a set of `count` images with the whole test split: the samples, and
    # real train images with the samples' class counts (floor and ceilings), so both carry the
    # same small-sample bias.
    real = matched_real_sample(train[1], labels, rng)
    metrics |= diversity_metrics(
        (embed(features, test[0]), np.asarray(test[1])),
        (embed(features, generated), labels),
        (embed(features, train[0][real]), np.asarray(train[1])[real]),
        class_names,
    )
    return metrics, labels, probabilities.argmax(axis=1)


def score_generator(
    generator: keras.Model,
    judge: keras.Model,
    train: LabelledImages,
    test: LabelledImages,
    class_names: Sequence[str],
    params: EvaluateParams,
    seed: int,
) -> dict[str, Any]:
    """Metrics of a class-conditional generator judged by a CNN; no file I/O.

    `params` is the typed evaluate section (gan_samples, confidence). A sample is "recognisable"
    when the judge gives the requested class probability >= confidence. Fidelity and diversity
    (Frechet distance, precision/recall, density/coverage, overall and per class, next to the
    same measures of real train images: tasks.gan_metrics) are taken in the judge's "embedding"
    layer against the test images. `diversity_score` is the gate's headline. Same dict as
    metrics/gan.json.
    """
    metrics, _, _ = _score_generator(generator, judge, train, test, list(class_names), params, seed)
    return metrics


def latent_interpolation(generator: keras.Model, classes: int, steps: int, seed: int) -> np.ndarray:
    """One row per class: images generated along a straight line between two noise vectors.

    Smooth rows mean the generator learnt a continuous latent space rather than memorising.
    """
    latent_dim = int(generator.inputs[0].shape[-1])
    rng = np.random.default_rng(seed)
    start, end = rng.normal(size=(2, classes, 1, latent_dim))
    fractions = np.linspace(0.0, 1.0, steps).reshape(1, -1, 1)
    noise = (start * (1 - fractions) + end * fractions).reshape(-1, latent_dim)
    labels = np.repeat(np.arange(classes), steps)
    return generate_images(generator, noise, labels)


def _load_judge(root: Path) -> keras.Model:
    """The run's CNN, which judges the GAN's samples."""
    import keras

    judge_file = model_file(JUDGE_MODEL, root)
    if not judge_file.is_file():
        raise FileNotFoundError(
            f"{judge_file} not found: the GAN is judged by the CNN, run train@{JUDGE_MODEL}"
        )
    return keras.models.load_model(judge_file, safe_mode=True)


def save_nearest_real(
    judge: keras.Model, samples: np.ndarray, train_images: np.ndarray, path: Path, columns: int
) -> None:
    """Each sample next to its nearest training image in the judge's embedding space: copies and
    near-copies show as identical pairs, collapse as one repeated pair per row."""
    from tasks.figures import save_pair_grid
    from tasks.gan_metrics import nearest_rows

    features = embedding_model(judge)
    nearest = nearest_rows(embed(features, samples), embed(features, train_images))
    save_pair_grid(samples, train_images[nearest], path, pairs_per_row=columns)


def evaluate_gan(
    root: Path,
    train: LabelledImages,
    test: LabelledImages,
    class_names: list[str],
    params: EvaluateParams,
    seed: int,
) -> dict[str, Any]:
    """Score the trained generator with the run's CNN; write sample, nearest-real,
    interpolation and confusion figures."""
    import keras

    from tasks.figures import save_image_grid

    generator = keras.models.load_model(model_file("gan", root), safe_mode=True)
    judge = _load_judge(root)
    metrics, labels, recognised = _score_generator(
        generator, judge, train, test, class_names, params, seed
    )
    # Requested class vs the class the CNN sees: the GAN's confusion matrix.
    write_csv(
        confusion_plot_file("gan", root),
        ["actual", "predicted"],
        [(class_names[a], class_names[p]) for a, p in zip(labels, recognised, strict=True)],
    )
    classes = len(class_names)
    figures = images_dir("gan", root)
    rng = np.random.default_rng(seed + 1)
    latent_dim = int(generator.inputs[0].shape[-1])
    grid_labels = np.repeat(np.arange(classes), 10)
    grid_noise = rng.normal(size=(len(grid_labels), latent_dim)).astype("float32")
    grid = generate_images(generator, grid_noise, grid_labels)
    save_image_grid(grid, figures / "samples.png", columns=10)
    # The first NEAREST_PAIRS samples of each class's row, each with its nearest training image.
    first = (np.arange(len(grid)) % 10) < NEAREST_PAIRS
    save_nearest_real(judge, grid[first], train[0], figures / "nearest_real.png", NEAREST_PAIRS)
    steps = INTERPOLATION_STEPS
    strip = latent_interpolation(generator, classes, steps, seed + 2)
    save_image_grid(strip, figures / "interpolation.png", columns=steps)
    return metrics


def write_csv(path: Path, header: list[str], rows: Sequence[Sequence[Any]]) -> None:
    """A CSV plot file (`dvc plots`), written atomically."""
    with atomic_path(path) as temporary, temporary.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def rounded(value: Any) -> Any:
    """Floats rounded to 6 decimals, in nested dicts too: metrics files diff cleanly."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    return value


def write_metrics(metrics: dict[str, Any], path: Path) -> None:
    """Deterministic JSON (rounded floats, sorted keys, indent 2), replaced atomically."""
    write_json(path, rounded(metrics))


def evaluate(model: str, root: Path, params: EvaluateParams, seed: int) -> dict[str, Any]:
    """Score `model` on the test split; write metrics/<model>.json and its plots."""
    from tasks.prepare import load_meta, load_splits

    meta = load_meta(root / PREPARED_META_FILE)
    splits = load_splits(root / SPLITS_FILE)
    class_names = [str(name) for name in meta["class_names"]]
    if model in CLASSIFIERS:
        metrics = evaluate_classifier(model, root, splits.x["test"], splits.y["test"], class_names)
    else:
        train = (splits.x["train"], splits.y["train"])
        metrics = evaluate_gan(
            root, train, (splits.x["test"], splits.y["test"]), class_names, params, seed
        )
    write_metrics(metrics, model_metrics_file(model, root))
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=MODEL_NAMES)
    parser.add_argument("--params", type=Path, default=PARAMS_FILE)
    parser.add_argument("--root", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    try:
        params = load_section(EvaluateParams, "evaluate", args.params)
        metrics = evaluate(args.model, args.root, params, load_seed(args.params))
    except (ParamsError, FileNotFoundError, ValueError) as error:
        print(f"evaluate {args.model} failed: {error}", file=sys.stderr)
        return 1
    headline = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    print(f"evaluated {args.model}: " + ", ".join(f"{k}={v:.4g}" for k, v in headline.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
