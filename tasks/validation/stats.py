"""Class-distribution figures: KL divergences, the imbalance ratio and balanced class weights."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

KL_EPSILON = 1e-6  # added to every bin so a bin empty on one side gives a finite divergence


def kl_divergence(
    observed: Sequence[float] | np.ndarray, expected: Sequence[float] | np.ndarray
) -> float:
    """KL(observed || expected) in nats between two count or probability vectors.

    Infinite when the observed side has mass where the expected side has none.
    """
    p = np.asarray(observed, dtype=np.float64)
    q = np.asarray(expected, dtype=np.float64)
    if p.size == 0 or p.sum() <= 0 or q.sum() <= 0:
        return math.inf
    p, q = p / p.sum(), q / q.sum()
    nonzero = p > 0
    if np.any(q[nonzero] == 0):
        return math.inf
    return float(np.sum(p[nonzero] * np.log(p[nonzero] / q[nonzero])))


def kl_divergence_from_uniform(counts: Sequence[int]) -> float:
    """KL(observed || uniform) in nats."""
    return kl_divergence(counts, np.ones(len(counts)))


def smoothed_kl(observed: Sequence[float], expected: Sequence[float]) -> float:
    """KL between histograms with KL_EPSILON per bin (finite when a bin empties)."""
    p = np.asarray(observed, dtype=np.float64)
    q = np.asarray(expected, dtype=np.float64)
    p = p / max(p.sum(), 1e-12) + KL_EPSILON
    q = q / max(q.sum(), 1e-12) + KL_EPSILON
    return kl_divergence(p, q)


def imbalance_ratio(counts: Sequence[int]) -> float:
    """Largest over smallest class count (inf when a class is empty)."""
    if len(counts) == 0 or min(counts) <= 0:
        return math.inf
    return max(counts) / min(counts)


def compute_class_weights(counts: Mapping[Any, int]) -> dict[str, float]:
    """Balanced class weights n_total / (k * n_c), as sklearn's class_weight="balanced".

    Keys are the class ids as strings. Raises ValueError when a class has no images.
    """
    if not counts:
        raise ValueError("class weights need at least one class")
    bad = {str(key): int(value) for key, value in counts.items() if int(value) <= 0}
    if bad:
        raise ValueError(f"class weights undefined for classes without images: {bad}")
    total = sum(int(value) for value in counts.values())
    k = len(counts)
    return {str(key): total / (k * int(value)) for key, value in counts.items()}
