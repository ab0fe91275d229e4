"""Fidelity and diversity of a class-conditional generator, measured in a judge's feature space.

A generator can draw one perfect digit per class and be "recognisable" 100 % of the time, so the
GAN is also measured by how much of the real data its samples cover:

- Frechet distance (the FID formula) between Gaussians fitted to two feature sets.
- Improved precision and recall (Kynkaanniemi et al. 2019): each set's manifold is the union of
  balls around its points, each with the radius to the point's k-th nearest neighbour in the same
  set. Precision: the share of generated samples inside the real manifold (fidelity); recall: the
  share of real images inside the generated manifold (diversity).
- Density and coverage (Naeem et al. 2020), from the real balls only, so a few outlying samples
  cannot inflate them: density counts how many real balls hold each sample (about 1 for real
  data), coverage is the share of real balls that hold at least one sample (diversity).

Every measure is taken overall (all samples against all real images) and per class (samples
requested as class c against real images of class c). `real` values of the same measures (a
sample of real training images of the same size and class counts as the generated set, against
the same reference) are the ceiling a perfect generator reaches on average, and the floor for the
Frechet distance.

The headline, `diversity_score`, is the mean over classes of
min(1, coverage_c / coverage_ceiling_c, recall_c / recall_ceiling_c): 1.0 means every class is
covered and recalled as well as real images of the same number do. Each measure alone can be
fooled: one prototype drawing near a class's centre lies in many real balls (coverage ~0.5 on
MNIST) but its manifold is a point (recall ~0); a few outlying samples have wide balls that
recall many real images but cover few. Collapse therefore scores near 0 however recognisable
the drawings are. A generator that copies real images would reach 1.0: that is what the
nearest-real-neighbour figure is for.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

K_NEAREST = 5  # neighbours defining a ball (Naeem et al. recommend 5 for density and coverage)
MANIFOLD_METRICS = ("precision", "recall", "density", "coverage")
MIN_PER_CLASS = 1  # generated and test images of each class, for the per-class measures


def _covariance(features: np.ndarray) -> np.ndarray:
    """Sample covariance of the rows; zero for a single row (a point has no spread)."""
    if len(features) < 2:
        return np.zeros((features.shape[1], features.shape[1]))
    return np.atleast_2d(np.cov(features, rowvar=False))


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (the FID formula)."""
    from scipy import linalg

    mean_a, mean_b = features_a.mean(axis=0), features_b.mean(axis=0)
    cov_a, cov_b = _covariance(features_a), _covariance(features_b)
    with warnings.catch_warnings():
        # Singular covariances (few samples per class, dead ReLU features, a collapsed class)
        # are expected here: checked below, regularised as the FID reference does.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covariance_sqrt = linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(covariance_sqrt).all():
            offset = np.eye(len(cov_a)) * 1e-6
            covariance_sqrt = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    covariance_sqrt = np.real(covariance_sqrt)
    distance = ((mean_a - mean_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covariance_sqrt)
    return float(max(distance, 0.0))


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of `a` (N, D) and of `b` (M, D): an (N, M) array."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    squared = (a**2).sum(axis=1)[:, None] + (b**2).sum(axis=1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


def neighbour_radii(features: np.ndarray, k: int = K_NEAREST) -> np.ndarray:
    """Distance from each row to its k-th nearest other row (k capped at rows - 1; 0 for one row).

    A set of identical rows has radius 0 everywhere: its manifold is a single point.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1 nearest neighbours, got {k}")
    count = len(features)
    if count < 2:
        return np.zeros(count)
    distances = np.sort(pairwise_distances(features, features), axis=1)
    return distances[:, min(k, count - 1)]  # column 0 is each row's distance to itself


def nearest_rows(queries: np.ndarray, pool: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Index of the nearest `pool` row for each query row (in chunks: the pool may be large)."""
    if len(pool) == 0:
        raise ValueError("nearest_rows needs a non-empty pool of rows to search")
    found = [
        pairwise_distances(queries[start : start + chunk], pool).argmin(axis=1)
        for start in range(0, len(queries), chunk)
    ]
    return np.concatenate(found) if found else np.zeros(0, np.int64)


def manifold_metrics(real: np.ndarray, fake: np.ndarray, k: int = K_NEAREST) -> dict[str, float]:
    """Precision, recall, density and coverage of `fake` feature rows against `real` ones."""
    if len(real) == 0 or len(fake) == 0:
        raise ValueError(
            f"manifold metrics need real and generated features, got {len(real)} and {len(fake)}"
        )
    distances = pairwise_distances(real, fake)  # (real, fake)
    in_real_ball = distances <= neighbour_radii(real, k)[:, None]
    # Repeated samples are each other's neighbours, so repeats shrink the generated balls: a
    # generator that draws a few images again and again has a small manifold, as it should.
    in_fake_ball = distances <= neighbour_radii(fake, k)[None, :]
    k_used = max(1, min(k, len(real) - 1))
    return {
        "precision": float(in_real_ball.any(axis=0).mean()),
        "recall": float(in_fake_ball.any(axis=1).mean()),
        "density": float(in_real_ball.sum() / (k_used * len(fake))),
        "coverage": float(in_real_ball.any(axis=1).mean()),
    }


def matched_real_sample(
    pool_labels: np.ndarray, wanted_labels: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Indices into a real pool with the class counts of `wanted_labels`, drawn without
    replacement (all of a class when the pool has fewer), sorted (split arrays may be ordered)."""
    pool_labels = np.asarray(pool_labels)
    chosen = []
    for label, count in zip(*np.unique(wanted_labels, return_counts=True), strict=True):
        members = np.flatnonzero(pool_labels == label)
        chosen.append(rng.choice(members, size=min(count, len(members)), replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def _ratio(value: float, reference: float) -> float:
    """value / reference capped at 1; the raw value when the reference is 0 (nothing to reach)."""
    return min(1.0, value / reference) if reference > 0 else min(1.0, value)


def _class_diversity(scores: dict[str, float]) -> float:
    """One class's share of the headline: the weaker of its coverage and recall relative to
    real images' (each capped at 1)."""
    return min(
        _ratio(scores["coverage"], scores["coverage_ceiling"]),
        _ratio(scores["recall"], scores["recall_ceiling"]),
    )


def _class_scores(
    test: tuple[np.ndarray, np.ndarray],
    fake: tuple[np.ndarray, np.ndarray],
    real: tuple[np.ndarray, np.ndarray],
    label: int,
) -> dict[str, float]:
    """One class's measures: generated and real samples of that class against its test images."""
    reference = test[0][test[1] == label]
    generated, matched = fake[0][fake[1] == label], real[0][real[1] == label]
    scores = manifold_metrics(reference, generated)
    ceiling = manifold_metrics(reference, matched)
    scores |= {f"{name}_ceiling": ceiling[name] for name in MANIFOLD_METRICS}
    scores["frechet_distance"] = frechet_distance(generated, reference)
    scores["frechet_floor"] = frechet_distance(matched, reference)
    scores["frechet_ratio"] = scores["frechet_distance"] / max(scores["frechet_floor"], 1e-12)
    return scores


def diversity_metrics(
    test: tuple[np.ndarray, np.ndarray],
    fake: tuple[np.ndarray, np.ndarray],
    real: tuple[np.ndarray, np.ndarray],
    class_names: Sequence[str],
) -> dict[str, Any]:
    """Every measure of the module docstring from (features, labels) of the test split, the
    generated samples (their requested classes) and a matched real sample (the ceilings).

    Returns the overall measures, their `_ceiling`s, frechet_distance/_floor/_ratio, the worst
    class's coverage, recall and Frechet ratio, `diversity_score` and `per_class` details.
    """
    for name, (features, labels) in (("test", test), ("generated", fake), ("real", real)):
        if len(features) != len(labels):
            raise ValueError(f"{name}: {len(features)} feature rows but {len(labels)} labels")
        counts = np.bincount(np.asarray(labels, np.int64), minlength=len(class_names))
        if name != "real" and counts.min() < MIN_PER_CLASS:
            raise ValueError(
                f"{name} images: class {class_names[int(counts.argmin())]!r} has "
                f"{counts.min()}; per-class measures need >= {MIN_PER_CLASS} per class "
                "(evaluate.gan_samples must be >= the number of classes, and every class "
                "needs test images)"
            )
    overall = manifold_metrics(test[0], fake[0])
    ceiling = manifold_metrics(test[0], real[0])
    metrics: dict[str, Any] = dict(overall)
    metrics |= {f"{name}_ceiling": ceiling[name] for name in MANIFOLD_METRICS}
    metrics["frechet_distance"] = frechet_distance(fake[0], test[0])
    metrics["frechet_floor"] = frechet_distance(real[0], test[0])
    metrics["frechet_ratio"] = metrics["frechet_distance"] / max(metrics["frechet_floor"], 1e-12)
    per_class = {
        str(name): _class_scores(test, fake, real, index) for index, name in enumerate(class_names)
    }
    metrics["min_class_coverage"] = min(scores["coverage"] for scores in per_class.values())
    metrics["min_class_recall"] = min(scores["recall"] for scores in per_class.values())
    metrics["max_class_frechet_ratio"] = max(s["frechet_ratio"] for s in per_class.values())
    metrics["diversity_score"] = float(np.mean([_class_diversity(s) for s in per_class.values()]))
    metrics["per_class"] = per_class
    return metrics
