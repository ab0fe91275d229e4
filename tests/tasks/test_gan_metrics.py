"""GAN fidelity and diversity measures on hand-checkable feature sets: exact values on points of a
line, the copy (the real features themselves) and the collapse (one point per class)."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.gan_metrics import (
    diversity_metrics,
    frechet_distance,
    manifold_metrics,
    matched_real_sample,
    nearest_rows,
    neighbour_radii,
    pairwise_distances,
)

CLASSES = ["a", "b", "c"]


def test_frechet_distance_is_zero_for_identical_sets_and_grows_with_shift() -> None:
    features = np.random.default_rng(0).normal(size=(500, 4))
    assert frechet_distance(features, features) < 1e-6
    shifted = frechet_distance(features, features + 3.0)
    assert abs(shifted - 36.0) < 1e-6  # squared mean shift: 4 dimensions x 3^2


def test_frechet_distance_of_scaled_gaussians_matches_the_formula() -> None:
    # Same means, covariances I and 4I in 2 dimensions: trace(I + 4I - 2 * 2I) = 2.
    features = np.random.default_rng(1).normal(size=(20000, 2))
    features -= features.mean(axis=0)
    whitened = features @ np.linalg.inv(np.linalg.cholesky(np.cov(features, rowvar=False))).T
    assert frechet_distance(whitened, 2 * whitened) == pytest.approx(2.0, abs=1e-6)


def test_frechet_distance_of_single_rows_is_the_squared_distance() -> None:
    # One sample of a class: a point with no spread, against a set with covariance I (2 rows).
    point = np.array([[3.0, 4.0]])
    assert frechet_distance(point, point) == 0.0
    pair = np.array([[-1.0, 0.0], [1.0, 0.0]])  # mean 0, variance 2 in x, 0 in y
    assert frechet_distance(point, pair) == pytest.approx(25.0 + 2.0)


def test_distances_and_radii_on_a_line() -> None:
    points = np.array([[0.0], [1.0], [3.0], [6.0]])
    np.testing.assert_allclose(
        pairwise_distances(points, points[:2]), [[0, 1], [1, 0], [3, 2], [6, 5]]
    )
    np.testing.assert_allclose(neighbour_radii(points, k=1), [1, 1, 2, 3])
    np.testing.assert_allclose(neighbour_radii(points, k=2), [3, 2, 3, 5])
    np.testing.assert_allclose(neighbour_radii(points, k=9), [6, 5, 3, 6])  # k capped at 3
    np.testing.assert_allclose(neighbour_radii(points[:1]), [0.0])
    with pytest.raises(ValueError, match="k must be >= 1"):
        neighbour_radii(points, k=0)


def test_manifold_metrics_by_hand_on_a_line() -> None:
    # Real 0, 1, 3, 6 with k=1: balls [-1, 1], [0, 2], [1, 5], [3, 9].
    # Fakes 0.5 and 10: fake radii (k=1) 9.5 both.
    real = np.array([[0.0], [1.0], [3.0], [6.0]])
    fake = np.array([[0.5], [10.0]])
    scores = manifold_metrics(real, fake, k=1)
    assert scores["precision"] == 0.5  # 0.5 is in the real manifold, 10 is not
    assert scores["recall"] == 1.0  # every real point lies within 9.5 of a fake
    assert scores["density"] == 2 / (1 * 2)  # 0.5 sits in the balls of 0 and 1
    assert scores["coverage"] == 0.5  # the balls of 0 and 1 hold a fake, those of 3 and 6 none


def test_a_copy_reaches_every_measure_and_a_collapse_covers_k_plus_one_balls() -> None:
    real = np.random.default_rng(2).normal(size=(200, 8))
    copy = manifold_metrics(real, real, k=5)
    # Every real point lies in its own ball and its 5 neighbours' balls: density (k + 1) / k.
    assert copy == pytest.approx({"precision": 1, "recall": 1, "density": 1.2, "coverage": 1})
    collapsed = manifold_metrics(real, np.repeat(real[:1], 200, axis=0), k=5)
    assert collapsed["precision"] == 1.0  # a perfect image...
    assert collapsed["recall"] == 1 / 200  # ...whose manifold is one point
    radii = neighbour_radii(real, 5)
    in_balls = pairwise_distances(real, real[:1])[:, 0] <= radii
    assert collapsed["coverage"] == in_balls.mean() < 0.1


def test_manifold_metrics_need_both_sets() -> None:
    with pytest.raises(ValueError, match="need real and generated features"):
        manifold_metrics(np.zeros((3, 2)), np.zeros((0, 2)))


def _clusters(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian classes in 6 dimensions."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASSES)), per_class)
    return rng.normal(size=(len(labels), 6)) + 10.0 * labels[:, None], labels


def test_diversity_metrics_of_a_copy_and_of_a_collapse() -> None:
    test, train = _clusters(40, seed=3), _clusters(40, seed=4)
    copy = diversity_metrics(test, test, train, CLASSES)
    assert copy["diversity_score"] == 1.0  # at the real ceiling in every class
    assert copy["coverage"] == 1.0 >= copy["coverage_ceiling"] > 0.8
    assert copy["frechet_distance"] == pytest.approx(0.0, abs=1e-6)
    assert copy["frechet_floor"] > 0 and copy["frechet_ratio"] < 1e-6
    assert set(copy["per_class"]) == set(CLASSES)
    assert copy["per_class"]["b"]["recall"] == 1.0
    assert copy["min_class_coverage"] == 1.0

    # One image per class, repeated: a perfect training image of each class.
    labels = np.repeat(np.arange(3), 40)
    firsts = np.stack([train[0][train[1] == c][0] for c in range(3)])
    collapsed = diversity_metrics(test, (firsts[labels], labels), train, CLASSES)
    assert collapsed["min_class_recall"] == 0.0  # a one-point manifold holds no test image
    assert collapsed["diversity_score"] < 0.5 and collapsed["min_class_coverage"] < 0.5
    assert collapsed["recall"] < 0.05 < collapsed["recall_ceiling"]
    assert collapsed["frechet_ratio"] > 5 and collapsed["max_class_frechet_ratio"] > 5

    # A prototype at each class centre lies in many real balls (coverage) but is a point (recall
    # 0): the headline takes the weaker of the two, so it scores 0.
    centres = np.stack([test[0][test[1] == c].mean(axis=0) for c in range(3)])
    prototype = diversity_metrics(test, (centres[labels], labels), train, CLASSES)
    assert prototype["coverage"] > 0.4 and prototype["recall"] == 0.0
    assert prototype["diversity_score"] == 0.0


def test_diversity_metrics_reject_too_few_samples_of_a_class() -> None:
    test = _clusters(5, seed=5)
    fake = (test[0][:5], test[1][:5])  # only class a
    with pytest.raises(ValueError, match=r"class 'b' has 0.*evaluate.gan_samples must be"):
        diversity_metrics(test, fake, test, CLASSES)
    with pytest.raises(ValueError, match="3 feature rows but 2 labels"):
        diversity_metrics(test, (test[0][:3], test[1][:2]), test, CLASSES)


def test_matched_real_sample_has_the_class_counts_without_repeats() -> None:
    pool = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    wanted = np.array([0, 1, 2, 0, 1, 2])
    chosen = matched_real_sample(pool, wanted, np.random.default_rng(0))
    assert sorted(pool[chosen].tolist()) == [0, 0, 1, 1, 2, 2]
    assert len(set(chosen.tolist())) == 6 and list(chosen) == sorted(chosen)
    few = matched_real_sample(pool, np.array([1, 1, 1]), np.random.default_rng(0))
    assert sorted(few.tolist()) == [3, 4]  # all of the class when the pool has fewer


def test_nearest_rows_finds_the_closest_pool_row_across_chunks() -> None:
    pool = np.array([[0.0, 0.0], [5.0, 5.0], [10.0, 0.0]])
    queries = np.array([[9.0, 1.0], [0.2, -0.1], [4.0, 6.0]])
    assert nearest_rows(queries, pool, chunk=2).tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="non-empty pool"):
        nearest_rows(queries, pool[:0])
