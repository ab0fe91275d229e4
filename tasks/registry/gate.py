"""The promotion gate: move a registered model's `champion` alias only to a version that earned it.

A challenger is promoted when (a) every absolute threshold in params.yaml (`register.thresholds`)
holds and (b) its headline metric is not worse than the current champion's, re-scored now on the
same test split, by more than `register.tolerance`. With no champion yet, (a) decides.

Concurrency: the champion is compared outside any lock (scoring is slow), then, under the
model's promotion lock, re-read; if it moved meanwhile the comparison is redone against the new
champion (compare-and-set). Two runs finishing at once therefore never leave `champion` on the
version that lost.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tasks.registry import tags as tag
from tasks.registry.champion import (
    PromotionError,
    current_champion,
    move_champion,
    promotion_lock,
    registry_uri,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

PROMOTED = "promoted"
REJECTED = "rejected"
CAS_ATTEMPTS = 5

ScoreChampion = Callable[[str], Mapping[str, Any]]
Thresholds = Mapping[str, Mapping[str, float]]


def now() -> str:
    """UTC time as recorded in gate and rollback tags."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided for one challenger version, and why."""

    promote: bool
    metric: str
    challenger_score: float
    champion_version: str | None
    champion_score: float | None
    tolerance: float
    reason: str

    @property
    def decision(self) -> str:
        return PROMOTED if self.promote else REJECTED

    @property
    def difference(self) -> float | None:
        """challenger - champion on the headline metric (None without a champion score)."""
        if self.champion_score is None:
            return None
        return self.challenger_score - self.champion_score

    def tags(self) -> dict[str, str]:
        """Version tags recording the decision (MLflow tag values are strings)."""
        return {
            tag.GATE_DECISION: self.decision,
            tag.GATE_METRIC: self.metric,
            tag.GATE_CHALLENGER_SCORE: f"{self.challenger_score:.6f}",
            tag.GATE_CHAMPION_VERSION: self.champion_version or tag.NONE,
            tag.GATE_CHAMPION_SCORE: (
                tag.NONE if self.champion_score is None else f"{self.champion_score:.6f}"
            ),
            tag.GATE_TOLERANCE: f"{self.tolerance:g}",
            tag.GATE_REASON: self.reason,
            tag.GATE_DECIDED_AT: now(),
        }


def threshold_failures(metrics: Mapping[str, Any], thresholds: Thresholds) -> list[str]:
    """Human-readable failed checks; a metric missing from `metrics` fails its threshold."""
    failures = []
    for metric, bounds in thresholds.items():
        value = metrics.get(metric)
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            failures.append(f"{metric} missing")
            continue
        if "min" in bounds and value < bounds["min"]:
            failures.append(f"{metric} {value:.4f} < min {bounds['min']:g}")
        if "max" in bounds and value > bounds["max"]:
            failures.append(f"{metric} {value:.4f} > max {bounds['max']:g}")
    return failures


def _verdict(
    score: float,
    champion_score: float | None,
    champion_version: str | None,
    metric: str,
    tolerance: float,
) -> tuple[bool, str]:
    """Challenger vs champion once the thresholds hold: (promote, reason)."""
    if champion_version is None:
        return True, "all absolute thresholds hold; no champion yet"
    if champion_score is None:
        return False, f"champion v{champion_version} has no {metric} to compare with"
    if score < champion_score - tolerance:
        return False, (
            f"{metric} {score:.4f} is worse than champion v{champion_version} "
            f"{champion_score:.4f} (re-scored on this test split) by more than {tolerance:g}"
        )
    return True, (
        f"all absolute thresholds hold; {metric} {score:.4f} vs champion v{champion_version} "
        f"{champion_score:.4f} (re-scored on this test split), within tolerance {tolerance:g}"
    )


def decide(
    challenger: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    *,
    metric: str,
    thresholds: Thresholds,
    tolerance: float,
    champion_version: str | None,
) -> GateDecision:
    """The gate itself, a pure function: thresholds first, then challenger vs champion."""
    if tolerance < 0:
        raise PromotionError(f"params.yaml: register.tolerance must be >= 0, got {tolerance}")
    if not isinstance(challenger.get(metric), int | float):
        raise PromotionError(f"challenger metrics have no numeric {metric!r}")
    score = float(challenger[metric])
    champion_score = (
        float(champion[metric])
        if champion is not None and isinstance(champion.get(metric), int | float)
        else None
    )
    failures = threshold_failures(challenger, thresholds)
    if failures:
        promote, reason = False, "absolute thresholds failed: " + "; ".join(failures)
    else:
        promote, reason = _verdict(score, champion_score, champion_version, metric, tolerance)
    return GateDecision(promote, metric, score, champion_version, champion_score, tolerance, reason)


def _decide_against(
    seen: str | None,
    version: str,
    challenger: Mapping[str, Any],
    score_champion: ScoreChampion,
    *,
    metric: str,
    thresholds: Thresholds,
    tolerance: float,
) -> GateDecision:
    """Decide against the champion `seen` (re-scored); a scoring failure rejects."""
    champion_metrics: Mapping[str, Any] | None = None
    failure = None
    if seen is not None and seen != version:
        try:
            champion_metrics = score_champion(seen)
        except Exception as error:  # any failure to load/score must not move the alias
            failure = f"champion v{seen} could not be re-scored: {type(error).__name__}: {error}"
    decision = decide(
        challenger,
        champion_metrics,
        metric=metric,
        thresholds=thresholds,
        tolerance=tolerance,
        champion_version=seen if seen != version else None,
    )
    if failure is None:
        return decision
    return GateDecision(False, metric, decision.challenger_score, seen, None, tolerance, failure)


def gate(
    client: MlflowClient,
    name: str,
    version: str,
    challenger: Mapping[str, Any],
    *,
    metric: str,
    thresholds: Thresholds,
    tolerance: float,
    score_champion: ScoreChampion,
) -> GateDecision:
    """Decide on `version` and move `champion` to it when it wins; record the decision as tags.

    `score_champion(version)` re-scores a registered version on today's test split. When it
    fails, the challenger is rejected (the champion stays) and the reason says why.
    """
    version = str(version)
    uri = registry_uri(client)
    for _ in range(CAS_ATTEMPTS):
        seen = current_champion(client, name)
        decision = _decide_against(
            seen,
            version,
            challenger,
            score_champion,
            metric=metric,
            thresholds=thresholds,
            tolerance=tolerance,
        )
        with promotion_lock(name, uri):
            if current_champion(client, name) != seen:
                continue  # another run moved the champion while we scored: compare again
            for key, value in decision.tags().items():
                client.set_model_version_tag(name, version, key, value)
            if decision.promote:
                move_champion(client, name, version)
            return decision
    raise PromotionError(
        f"{name}: the champion changed {CAS_ATTEMPTS} times while v{version} was being compared"
    )
