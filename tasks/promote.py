"""The promotion gate: move a registered model's `champion` alias only to a version that earned it.

A challenger is promoted when (a) every absolute threshold in params.yaml (`register.thresholds`)
holds and (b) its headline metric is not worse than the current champion's, re-scored now on the
same test split, by more than `register.tolerance`. With no champion yet, (a) decides.

Concurrency: the champion is compared outside any lock (scoring is slow), then, under a
per-model file lock, re-read; if it moved meanwhile the comparison is redone against the new
champion (compare-and-set). Two runs finishing at once therefore never leave `champion` on the
version that lost. The lock is a file next to a sqlite store (or in the temp dir for a remote
store, which makes the lock host-local: the compare-and-set re-read still catches most races).

`rollback` moves `champion` back to the previous champion (or a named version) with who/when/why
tags, refusing versions the gate rejected unless forced.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

CHAMPION = "champion"
CHALLENGER = "challenger"
# Registered-model tag: JSON list of the champion's versions, oldest first (rollback reads it).
HISTORY_TAG = "champion_history"
HISTORY_LIMIT = 50
PROMOTED = "promoted"
REJECTED = "rejected"
CAS_ATTEMPTS = 5

ScoreChampion = Callable[[str], Mapping[str, Any]]


class PromotionError(ValueError):
    """A gate or rollback input is invalid, or the registry refused the change."""


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
            "gate.decision": self.decision,
            "gate.metric": self.metric,
            "gate.challenger_score": f"{self.challenger_score:.6f}",
            "gate.champion_version": self.champion_version or "none",
            "gate.champion_score": (
                "none" if self.champion_score is None else f"{self.champion_score:.6f}"
            ),
            "gate.tolerance": f"{self.tolerance:g}",
            "gate.reason": self.reason,
            "gate.decided_at": _now(),
        }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_thresholds(thresholds: Mapping[str, Any], model: str) -> dict[str, dict[str, float]]:
    """Validate one model's thresholds: {metric: {min: x} | {max: y} | {min, max}}."""
    if not isinstance(thresholds, Mapping):
        raise PromotionError(
            f"params.yaml: register.thresholds.{model} must map metric -> {{min|max: number}}"
        )
    checked: dict[str, dict[str, float]] = {}
    for metric, bounds in thresholds.items():
        if not isinstance(bounds, Mapping) or not bounds or set(bounds) - {"min", "max"}:
            raise PromotionError(
                f"params.yaml: register.thresholds.{model}.{metric} must be "
                f"{{min: number}} and/or {{max: number}}, got {bounds!r}"
            )
        for key, value in bounds.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise PromotionError(
                    f"params.yaml: register.thresholds.{model}.{metric}.{key} must be a number"
                )
        checked[str(metric)] = {key: float(value) for key, value in bounds.items()}
    return checked


def threshold_failures(
    metrics: Mapping[str, Any], thresholds: Mapping[str, Mapping[str, float]]
) -> list[str]:
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


def decide(
    challenger: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    *,
    metric: str,
    thresholds: Mapping[str, Mapping[str, float]],
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

    def decision(promote: bool, reason: str) -> GateDecision:
        return GateDecision(
            promote, metric, score, champion_version, champion_score, tolerance, reason
        )

    failures = threshold_failures(challenger, thresholds)
    if failures:
        return decision(False, "absolute thresholds failed: " + "; ".join(failures))
    if champion_version is None:
        return decision(True, "all absolute thresholds hold; no champion yet")
    if champion_score is None:
        return decision(False, f"champion v{champion_version} has no {metric} to compare with")
    if score < champion_score - tolerance:
        return decision(
            False,
            f"{metric} {score:.4f} is worse than champion v{champion_version} "
            f"{champion_score:.4f} (re-scored on this test split) by more than {tolerance:g}",
        )
    return decision(
        True,
        f"all absolute thresholds hold; {metric} {score:.4f} vs champion v{champion_version} "
        f"{champion_score:.4f} (re-scored on this test split), within tolerance {tolerance:g}",
    )


def lock_file(name: str, tracking_uri: str) -> Path:
    """The lock file serialising alias changes of one registered model in one store."""
    if tracking_uri.startswith("sqlite:///"):
        folder = Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent / ".imgflow-locks"
    else:
        digest = hashlib.sha256(tracking_uri.encode()).hexdigest()[:12]
        folder = Path(tempfile.gettempdir()) / "imgflow-locks" / digest
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return folder / f"{safe}.lock"


@contextlib.contextmanager
def promotion_lock(name: str, tracking_uri: str) -> Iterator[None]:
    """Exclusive flock (per open file, so it also excludes threads of one process)."""
    path = lock_file(name, tracking_uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def current_champion(client: MlflowClient, name: str) -> str | None:
    """The version `champion` points at, or None (no alias, or no registered model)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def champion_history(client: MlflowClient, name: str) -> list[str]:
    tags = client.get_registered_model(name).tags
    try:
        history = json.loads(tags.get(HISTORY_TAG, "[]"))
    except json.JSONDecodeError:
        return []
    return [str(version) for version in history] if isinstance(history, list) else []


def _move_champion(client: MlflowClient, name: str, version: str) -> None:
    """Point `champion` at `version` and append it to the history (caller holds the lock)."""
    client.set_registered_model_alias(name, CHAMPION, version)
    history = [*champion_history(client, name), version][-HISTORY_LIMIT:]
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))


def _tracking_uri(client: MlflowClient) -> str:
    return str(client._registry_uri or client.tracking_uri)


def gate(
    client: MlflowClient,
    name: str,
    version: str,
    challenger: Mapping[str, Any],
    *,
    metric: str,
    thresholds: Mapping[str, Mapping[str, float]],
    tolerance: float,
    score_champion: ScoreChampion,
) -> GateDecision:
    """Decide on `version` and move `champion` to it when it wins; record the decision as tags.

    `score_champion(version)` re-scores a registered version on today's test split. When it
    fails, the challenger is rejected (the champion stays) and the reason says why.
    """
    version = str(version)
    uri = _tracking_uri(client)
    for _ in range(CAS_ATTEMPTS):
        seen = current_champion(client, name)
        champion_metrics: Mapping[str, Any] | None = None
        failure = None
        if seen is not None and seen != version:
            try:
                champion_metrics = score_champion(seen)
            except Exception as error:  # any failure to load/score must not move the alias
                failure = (
                    f"champion v{seen} could not be re-scored: {type(error).__name__}: {error}"
                )
        decision = decide(
            challenger,
            champion_metrics,
            metric=metric,
            thresholds=thresholds,
            tolerance=tolerance,
            champion_version=seen if seen != version else None,
        )
        if failure is not None:
            decision = GateDecision(
                False, metric, decision.challenger_score, seen, None, tolerance, failure
            )
        with promotion_lock(name, uri):
            if current_champion(client, name) != seen:
                continue  # another run moved the champion while we scored: compare again
            for key, value in decision.tags().items():
                client.set_model_version_tag(name, version, key, value)
            if decision.promote:
                _move_champion(client, name, version)
            return decision
    raise PromotionError(
        f"{name}: the champion changed {CAS_ATTEMPTS} times while v{version} was being compared"
    )


@dataclass(frozen=True)
class Rollback:
    name: str
    from_version: str | None
    to_version: str
    by: str
    at: str
    reason: str
    forced: bool


def rollback(
    client: MlflowClient,
    name: str,
    *,
    reason: str,
    version: str | None = None,
    force: bool = False,
    user: str | None = None,
) -> Rollback:
    """Move `champion` to `version`, or to the champion before the current one.

    Refuses a version the gate rejected unless `force`; records who/when/why on the version.
    """
    from mlflow.exceptions import MlflowException

    if not reason or not reason.strip():
        raise PromotionError("rollback needs a --reason (it is recorded on the version)")
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        raise PromotionError(f"no registered model named {name!r}") from error
    by = user or Settings.from_environment().user
    with promotion_lock(name, _tracking_uri(client)):
        current = current_champion(client, name)
        history = champion_history(client, name)
        if version is None:
            earlier = history[: len(history) - 1] if history and history[-1] == current else history
            candidates = [v for v in reversed(earlier) if v != current]
            if not candidates:
                raise PromotionError(
                    f"{name}: no previous champion to roll back to; name one with --version"
                )
            target = candidates[0]
            # Drop the current champion from the history so a second rollback goes further back.
            new_history = earlier[: len(earlier) - earlier[::-1].index(target)]
        else:
            target = str(version)
            new_history = [*history, target][-HISTORY_LIMIT:]
        try:
            target_version = client.get_model_version(name, target)
        except MlflowException as error:
            raise PromotionError(f"{name} has no version {target}") from error
        if target == current:
            raise PromotionError(f"{name} v{target} is already the champion")
        if target_version.tags.get("gate.decision") == REJECTED and not force:
            raise PromotionError(
                f"{name} v{target} was rejected by the gate "
                f"({target_version.tags.get('gate.reason', 'no reason recorded')}); "
                "pass --force to make it champion anyway"
            )
        at = _now()
        for key, value in {
            "rollback.by": by,
            "rollback.at": at,
            "rollback.reason": reason.strip(),
            "rollback.from": current or "none",
            "rollback.forced": "true" if force else "false",
        }.items():
            client.set_model_version_tag(name, target, key, value)
        client.set_registered_model_alias(name, CHAMPION, target)
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(new_history))
    return Rollback(name, current, target, by, at, reason.strip(), force)
