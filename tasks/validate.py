"""Data validation stage: check the per-image profile with Great Expectations before training.

The prepare step decodes every image once and writes ``artifacts/prepared/profile.parquet``
(one row per file: decode error, shape, pixel statistics, sha256, difference hash, split). This
step derives per-image flags (blank, duplicate, leaked across splits) and per-class and
per-dataset figures from it, runs Great Expectations suites over those tables, and writes:

- ``metrics/validation.json``: the compact summary DVC tracks as metrics (`success`, every
  check with its severity, observed value, threshold and first offending files, `warnings`,
  `class_weights` and `apply_class_weights`, which tasks/train.py reads);
- ``reports/validation/``: the Great Expectations Data Docs site (HTML);
- ``artifacts/accepted_data.json`` (only when no error-severity check failed): the summary of
  this data version (class distribution, binned pixel mean/std histograms) that the next run's
  drift checks and, with ``expected_distribution: accepted``, its class check compare against.

Each check has a severity in params.yaml: `error` stops the pipeline (exit status 1), `warning`
is reported and the run continues. The class-imbalance checks have two thresholds: between the
warning and the error threshold training applies class weights computed from the observed
counts; above the error threshold the run stops. Run by DVC as ``python -m tasks.validate``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.params import ParamsError, load_params, section
from tasks.paths import DATA_DOCS_DIR, PARAMS_FILE, PREPARED_META_FILE, VALIDATION_METRICS
from tasks.profile import EXCLUDED, PROFILE_FILE, hamming, read_profile
from tasks.validation_table import VALIDATION_TABLE_HEADER, validation_rows

if TYPE_CHECKING:
    import pandas as pd

ACCEPTED_SUMMARY = Path("artifacts/accepted_data.json")
SPLITS: tuple[str, ...] = ("train", "val", "test")
FLOAT_DIGITS = 6
MAX_LISTED = 20
HIST_BINS = 32
KL_EPSILON = 1e-6  # added to every bin so a bin empty on one side gives a finite divergence

ERROR = "error"
WARNING = "warning"
SEVERITIES = (ERROR, WARNING)

CHECK_INPUT = "input"
CHECK_DECODES = "decodes"
CHECK_IMAGE_SHAPE = "image_shape"
CHECK_PIXEL_RANGE = "pixel_range"
CHECK_BLANK = "blank_images"
CHECK_LABEL_SET = "label_set"
CHECK_CLASSES_PRESENT = "classes_present"
CHECK_MIN_PER_CLASS = "min_images_per_class"
CHECK_IMBALANCE = "imbalance_ratio"
CHECK_CLASS_KL = "class_kl"
CHECK_SPLIT_KL = "split_distribution"
CHECK_EXACT_LEAK = "exact_leakage"
CHECK_NEAR_LEAK = "near_leakage"
CHECK_WITHIN_DUPS = "within_split_duplicates"
CHECK_DRIFT = "drift"

# Checks with one pass/fail threshold and a configurable severity, in report order.
SINGLE_CHECKS: tuple[str, ...] = (
    CHECK_DECODES,
    CHECK_IMAGE_SHAPE,
    CHECK_PIXEL_RANGE,
    CHECK_BLANK,
    CHECK_LABEL_SET,
    CHECK_CLASSES_PRESENT,
    CHECK_MIN_PER_CLASS,
    CHECK_SPLIT_KL,
    CHECK_EXACT_LEAK,
    CHECK_NEAR_LEAK,
    CHECK_WITHIN_DUPS,
    CHECK_DRIFT,
)
BAND_CHECKS: tuple[str, ...] = (CHECK_IMBALANCE, CHECK_CLASS_KL)
NUMBER_KEYS: tuple[str, ...] = (
    "pixel_min",
    "pixel_max",
    "min_classes",
    "min_images_per_class",
    "max_blank_share",
    "split_kl_max",
    "near_duplicate_distance",
    "drift_kl_max",
)


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check: observed value, threshold (text), severity, offending files."""

    name: str
    success: bool
    observed: Any
    expected: str
    severity: str = ERROR
    offending: list[str] = field(default_factory=list)
    offending_count: int = 0

    def describe(self) -> str:
        """One human-readable line, e.g. 'decodes [error]: observed 2, expected 0 ...'."""
        line = (
            f"{self.name} [{self.severity}]: observed {self.observed!r}, expected {self.expected}"
        )
        if self.offending:
            more = self.offending_count - len(self.offending)
            line += "; files: " + ", ".join(self.offending[:5])
            line += f" (+{more + len(self.offending) - 5} more)" if self.offending_count > 5 else ""
        return line


@dataclass
class ValidationReport:
    """Everything the validation step found; serialised to metrics/validation.json."""

    checks: list[CheckResult]
    class_counts: dict[str, int] = field(default_factory=dict)
    kl_divergence: float | None = None
    imbalance_ratio: float | None = None
    class_weights: dict[str, float] | None = None
    apply_class_weights: bool = False
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> list[CheckResult]:
        """Error-severity checks that failed: any of them stops the pipeline."""
        return [c for c in self.checks if not c.success and c.severity == ERROR]

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success and c.severity == WARNING]

    @property
    def success(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (numpy scalars converted, floats rounded to 6 decimals)."""
        return _jsonable(
            {
                "success": self.success,
                "checks": [asdict(check) for check in self.checks],
                "failed_checks": [check.name for check in self.failures],
                "warnings": [check.describe() for check in self.warnings],
                "class_counts": self.class_counts,
                "kl_divergence": self.kl_divergence,
                "imbalance_ratio": self.imbalance_ratio,
                "class_weights": self.class_weights,
                "apply_class_weights": self.apply_class_weights,
                **self.figures,
            }
        )


class ValidationError(Exception):
    """The dataset failed validation; ``report`` is None for structural input errors."""

    def __init__(self, message: str, report: ValidationReport | None = None) -> None:
        super().__init__(message)
        self.report = report

    @classmethod
    def from_report(cls, report: ValidationReport) -> ValidationError:
        """Build the error whose message lists every failed error check on its own line."""
        lines = [f"  - {check.describe()}" for check in report.failures]
        return cls(f"{len(lines)} data check(s) failed:\n" + "\n".join(lines), report)


# --------------------------------------------------------------------------------------------
# Plain computations
# --------------------------------------------------------------------------------------------


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


def kl_divergence(observed: Sequence[float], expected: Sequence[float]) -> float:
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


@dataclass(frozen=True)
class NearDuplicates:
    """Cross-set near-duplicates: which rows of each side have one, the pair count, examples."""

    in_a: np.ndarray
    in_b: np.ndarray
    pairs: int
    examples: list[tuple[int, int, int]]


def near_duplicates(
    hashes_a: np.ndarray,
    hashes_b: np.ndarray,
    max_distance: int,
    max_examples: int = MAX_LISTED,
) -> NearDuplicates:
    """Pairs (i in a, j in b) whose hashes differ in at most max_distance bits.

    Works on unique hash values (small images often share a hash); pairs are counted from
    group sizes, never listed beyond the examples, so a dataset full of near-copies costs no
    more memory than a clean one.
    """
    in_a = np.zeros(len(hashes_a), dtype=bool)
    in_b = np.zeros(len(hashes_b), dtype=bool)
    if len(hashes_a) == 0 or len(hashes_b) == 0:
        return NearDuplicates(in_a, in_b, 0, [])
    unique_a, inverse_a, count_a = np.unique(hashes_a, return_inverse=True, return_counts=True)
    unique_b, inverse_b, count_b = np.unique(hashes_b, return_inverse=True, return_counts=True)
    ua, ub, distance = close_hash_pairs(unique_a, unique_b, max_distance)
    hit_a = np.zeros(len(unique_a), dtype=bool)
    hit_b = np.zeros(len(unique_b), dtype=bool)
    hit_a[ua] = True
    hit_b[ub] = True
    pairs = int(np.sum(count_a[ua].astype(np.int64) * count_b[ub]))
    first = list(
        zip(
            ua[:max_examples].tolist(),
            ub[:max_examples].tolist(),
            distance[:max_examples].tolist(),
            strict=True,
        )
    )
    in_a, in_b = hit_a[inverse_a], hit_b[inverse_b]
    examples: list[tuple[int, int, int]] = []
    for ua, ub, distance in first:
        for i in np.flatnonzero(inverse_a == ua)[:max_examples]:
            for j in np.flatnonzero(inverse_b == ub)[:max_examples]:
                if len(examples) < max_examples:
                    examples.append((int(i), int(j), int(distance)))
    return NearDuplicates(in_a, in_b, pairs, examples)


def _band_keys(hashes: np.ndarray, band: int, bands: int) -> np.ndarray:
    """Bits band, band + bands, band + 2 * bands, ... of each hash packed into one key.

    Interleaved rather than contiguous bits: in a difference hash neighbouring bits come
    from one image row, and border rows are nearly constant, which would crowd one bucket.
    """
    raw = hashes.view(np.uint64)
    key = np.zeros(len(hashes), dtype=np.uint64)
    for position, bit in enumerate(range(band, 64, bands)):
        key |= ((raw >> np.uint64(bit)) & np.uint64(1)) << np.uint64(position)
    return key


def close_hash_pairs(
    a: np.ndarray, b: np.ndarray, max_distance: int, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All index pairs (i, j) with Hamming(a[i], b[j]) <= max_distance, sorted by (i, j).

    Multi-index hashing: split the 64 bits into max_distance + 1 bands; by the pigeonhole
    principle a close pair agrees exactly on at least one band, so only pairs sharing a band
    value are compared (instead of all len(a) x len(b)).
    """
    bands = min(max_distance + 1, 64)
    found_a, found_b, found_d = [], [], []
    for band in range(bands):
        key_a, key_b = _band_keys(a, band, bands), _band_keys(b, band, bands)
        order = np.argsort(key_b, kind="stable")
        sorted_b = key_b[order]
        for start in range(0, len(a), chunk):
            query = key_a[start : start + chunk]
            low = np.searchsorted(sorted_b, query, "left")
            sizes = np.searchsorted(sorted_b, query, "right") - low
            total = int(sizes.sum())
            if total == 0:
                continue
            index_a = np.repeat(np.arange(start, start + len(query)), sizes)
            within = np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)
            index_b = order[np.repeat(low, sizes) + within]
            distance = hamming(a[index_a], b[index_b])
            keep = distance <= max_distance
            found_a.append(index_a[keep])
            found_b.append(index_b[keep])
            found_d.append(distance[keep])
    if not found_a:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    index_a, index_b, distance = (np.concatenate(x) for x in (found_a, found_b, found_d))
    _, first = np.unique(index_a * len(b) + index_b, return_index=True)
    return index_a[first], index_b[first], distance[first].astype(np.int64)


def summarise(profile: pd.DataFrame, class_names: list[str], params: Mapping[str, Any]) -> dict:
    """Summary of a data version for later drift checks: class counts, pixel histograms."""
    usable = profile[profile["split"] != EXCLUDED]
    counts = np.bincount(usable["label"].to_numpy(np.int64), minlength=len(class_names))
    low, high = float(params["pixel_min"]), float(params["pixel_max"])
    mean_hist, _ = np.histogram(usable["pixel_mean"], bins=HIST_BINS, range=(low, high))
    std_hist, _ = np.histogram(
        usable["pixel_std"], bins=HIST_BINS, range=(0.0, max((high - low) / 2, 1e-9))
    )
    return {
        "class_names": class_names,
        "class_counts": counts.tolist(),
        "images": len(usable),
        "pixel_range": [low, high],
        "pixel_mean_hist": mean_hist.tolist(),
        "pixel_std_hist": std_hist.tolist(),
    }


def _settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """Read and check the ``validate`` params, naming any bad key."""
    values: dict[str, Any] = {}
    for key in NUMBER_KEYS:
        value = params.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamsError(f"params.yaml: 'validate.{key}' must be a number, got {value!r}")
        if key != "pixel_min" and value < 0:
            raise ParamsError(f"params.yaml: 'validate.{key}' must be >= 0, got {value!r}")
        values[key] = value
    if values["pixel_min"] > values["pixel_max"]:
        raise ParamsError("params.yaml: 'validate.pixel_min' must not exceed 'validate.pixel_max'")
    for key in BAND_CHECKS:
        band = params.get(key)
        if not isinstance(band, Mapping) or not all(
            isinstance(band.get(level), int | float) and not isinstance(band.get(level), bool)
            for level in SEVERITIES
        ):
            raise ParamsError(
                f"params.yaml: 'validate.{key}' must map 'warning' and 'error' to numbers, "
                f"got {band!r}"
            )
        if band[WARNING] > band[ERROR]:
            raise ParamsError(
                f"params.yaml: 'validate.{key}.warning' must not exceed 'validate.{key}.error'"
            )
        values[key] = {level: float(band[level]) for level in SEVERITIES}
    expected = params.get("expected_distribution", "uniform")
    if expected not in ("uniform", "accepted"):
        raise ParamsError(
            "params.yaml: 'validate.expected_distribution' must be 'uniform' or 'accepted', "
            f"got {expected!r}"
        )
    values["expected_distribution"] = expected
    severity = params.get("severity")
    if not isinstance(severity, Mapping):
        raise ParamsError("params.yaml: 'validate.severity' must map check names to a severity")
    values["severity"] = {}
    for name in SINGLE_CHECKS:
        level = severity.get(name)
        if level not in SEVERITIES:
            raise ParamsError(
                f"params.yaml: 'validate.severity.{name}' must be 'error' or 'warning', "
                f"got {level!r}"
            )
        values["severity"][name] = level
    unknown = sorted(set(severity) - set(SINGLE_CHECKS))
    if unknown:
        raise ParamsError(
            f"params.yaml: unknown check(s) in 'validate.severity': {unknown}; "
            f"known: {list(SINGLE_CHECKS)}"
        )
    return values


# --------------------------------------------------------------------------------------------
# Great Expectations
# --------------------------------------------------------------------------------------------


def _quiet_gx() -> None:
    """Silence GX progress bars, analytics and renderer log noise (stage logs stay readable)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    # GX 1.24's HTML renderer logs a traceback at ERROR level for some failed expectations
    # (a missing 'unexpected_percent'); the page is still written, so keep that noise out.
    logging.getLogger("great_expectations.render").setLevel(logging.CRITICAL)


def _gx_context(data_docs_dir: Path | None) -> Any:
    """Ephemeral context (in-memory stores); with data_docs_dir, a filesystem Data Docs site."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    sites: dict[str, Any] = {}
    if data_docs_dir is not None:
        sites["local_site"] = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(Path(data_docs_dir).resolve()),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    config = DataContextConfig(
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites=sites,
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _run_suite(
    context: Any, name: str, expectations: list[Any], frame: pd.DataFrame
) -> dict[str, list[Any]]:
    """Validate ``frame``; results grouped by ``meta['check']`` (GX reorders results)."""
    import great_expectations as gx

    asset = context.data_sources.add_pandas(f"{name}_source").add_dataframe_asset(name)
    batch = asset.add_batch_definition_whole_dataframe(f"{name}_all_rows")
    suite = context.suites.add(gx.ExpectationSuite(name=f"{name}_suite"))
    for expectation in expectations:
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{name}_validation", data=batch, suite=suite)
    )
    outcome = definition.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": MAX_LISTED},
    )
    grouped: dict[str, list[Any]] = {}
    for result in outcome.results:
        meta = result.expectation_config.meta or {}
        key = meta.get("check", "unknown")
        if meta.get("level"):
            key = f"{key}:{meta['level']}"
        grouped.setdefault(key, []).append(result)
    return grouped


def _passed(results: Mapping[str, list[Any]], key: str) -> bool:
    found = results.get(key, [])
    return bool(found) and all(bool(result.success) for result in found)


# --------------------------------------------------------------------------------------------
# The suite
# --------------------------------------------------------------------------------------------


def _flag_duplicates(
    table: pd.DataFrame, max_distance: int
) -> tuple[list[str], list[str], list[str], int]:
    """Add leak/dup columns to ``table``; return offending descriptions and near-pair count."""
    in_split = table["split"].isin(SPLITS) & table["sha256"].notna()
    used = table[in_split]
    splits_per_sha = used.groupby("sha256")["split"].nunique()
    leaked = used["sha256"].map(splits_per_sha).gt(1)
    table["exact_leak"] = False
    table.loc[used.index, "exact_leak"] = leaked.to_numpy()
    within = used.duplicated(["split", "sha256"], keep=False)
    table["dup_within_split"] = False
    table.loc[used.index, "dup_within_split"] = within.to_numpy()

    exact: list[str] = []
    for _, group in used[leaked.to_numpy()].groupby("sha256", sort=False):
        exact.append(" = ".join(f"{row.split}:{row.path}" for row in group.itertuples()))
    dups: list[str] = []
    for _, group in used[within.to_numpy()].groupby(["split", "sha256"], sort=False):
        dups.append(" = ".join(group["path"].tolist()))

    table["near_leak"] = False
    near: list[str] = []
    pair_count = 0
    hashed = used[used["dhash"].notna()]
    by_split = {s: hashed[hashed["split"] == s] for s in SPLITS}
    for first, second in (("val", "train"), ("test", "train"), ("test", "val")):
        a, b = by_split[first], by_split[second]
        found = near_duplicates(
            a["dhash"].to_numpy(np.int64), b["dhash"].to_numpy(np.int64), max_distance
        )
        pair_count += found.pairs
        table.loc[a.index[found.in_a], "near_leak"] = True
        table.loc[b.index[found.in_b], "near_leak"] = True
        for i, j, distance in found.examples[: MAX_LISTED - len(near)]:
            near.append(
                f"{first}:{a['path'].iat[i]} ~ {second}:{b['path'].iat[j]} (distance {distance})"
            )
    return exact, near, dups, pair_count


def _first(frame: pd.DataFrame, mask: Any, column: str = "path") -> tuple[list[str], int]:
    selected = frame.loc[mask, column]
    return selected.head(MAX_LISTED).astype(str).tolist(), len(selected)


def validate_profile(
    profile: pd.DataFrame,
    class_names: list[str],
    image_shape: Sequence[int],
    params: Mapping[str, Any],
    accepted: Mapping[str, Any] | None = None,
    data_docs_dir: Path | None = None,
) -> ValidationReport:
    """Run every check over the profile table and return the report (never raises on a
    failed check: inspect ``report.success`` and ``report.warnings``).

    Class distribution checks and class weights use the training split (the one the model
    learns from); ``accepted`` is the last accepted data version's summary (drift, and the
    expected class distribution when params say so). Raises ValidationError for input that
    cannot be validated at all and ParamsError for bad thresholds.
    """
    settings = _settings(params)
    if not class_names:
        raise ValidationError("class_names is empty: meta.json must declare at least one class")
    if profile.empty:
        raise ValidationError("the dataset is empty: the profile has no images")
    _quiet_gx()
    import great_expectations as gx
    import pandas as pd

    expect = gx.expectations
    severity = settings["severity"]
    k = len(class_names)
    table = profile.copy()
    table["blank"] = (table["pixel_min"] == table["pixel_max"]).fillna(False)
    exact, near, dups, near_pairs = _flag_duplicates(
        table, int(settings["near_duplicate_distance"])
    )

    usable = table[table["split"].isin(SPLITS)]
    train = usable[usable["split"] == "train"]
    if train.empty:
        train = usable
    train_counts = np.bincount(train["label"].to_numpy(np.int64), minlength=k)[:k]
    all_counts = np.bincount(usable["label"].to_numpy(np.int64), minlength=k)[:k]
    expected_source = "uniform"
    expected_weights = np.full(k, 1.0 / k)
    if settings["expected_distribution"] == "accepted" and accepted:
        if list(accepted.get("class_names", [])) == class_names:
            expected_weights = np.asarray(accepted["class_counts"], np.float64)
            expected_weights = expected_weights / max(expected_weights.sum(), 1)
            expected_source = "accepted"
        else:
            expected_source = "uniform (accepted version has other classes)"
    class_kl = kl_divergence(train_counts, expected_weights)
    ratio = imbalance_ratio(train_counts.tolist())
    split_kl = {
        s: kl_divergence(
            np.bincount(usable.loc[usable["split"] == s, "label"], minlength=k)[:k], all_counts
        )
        for s in SPLITS
        if (usable["split"] == s).any()
    }

    drift: dict[str, float] | str
    if not accepted:
        drift = "no accepted data version yet"
    else:
        current = summarise(profile, class_names, settings)
        drift = {
            "pixel_mean_kl": smoothed_kl(current["pixel_mean_hist"], accepted["pixel_mean_hist"]),
            "pixel_std_kl": smoothed_kl(current["pixel_std_hist"], accepted["pixel_std_hist"]),
        }
        if list(accepted.get("class_names", [])) == class_names:
            drift["class_kl"] = smoothed_kl(current["class_counts"], accepted["class_counts"])
        else:
            drift["class_kl"] = math.inf

    def meta(check: str, level: str | None = None) -> dict[str, str]:
        return {"check": check, "level": level} if level else {"check": check}

    height, width, channels = (int(v) for v in image_shape)
    blank_mostly = max(0.0, 1.0 - float(settings["max_blank_share"]))
    image_expectations = [
        expect.ExpectColumnValuesToBeNull(column="error", meta=meta(CHECK_DECODES)),
        *(
            expect.ExpectColumnValuesToBeInSet(
                column=column, value_set=[value], meta=meta(CHECK_IMAGE_SHAPE)
            )
            for column, value in (("height", height), ("width", width), ("channels", channels))
        ),
        expect.ExpectColumnMinToBeBetween(
            column="pixel_min", min_value=settings["pixel_min"], meta=meta(CHECK_PIXEL_RANGE)
        ),
        expect.ExpectColumnMaxToBeBetween(
            column="pixel_max", max_value=settings["pixel_max"], meta=meta(CHECK_PIXEL_RANGE)
        ),
        expect.ExpectColumnValuesToBeInSet(
            column="blank", value_set=[False], mostly=blank_mostly, meta=meta(CHECK_BLANK)
        ),
        expect.ExpectColumnValuesToBeInSet(
            column="label_name", value_set=class_names, meta=meta(CHECK_LABEL_SET)
        ),
        expect.ExpectColumnValuesToBeInSet(
            column="exact_leak", value_set=[False], meta=meta(CHECK_EXACT_LEAK)
        ),
        expect.ExpectColumnValuesToBeInSet(
            column="near_leak", value_set=[False], meta=meta(CHECK_NEAR_LEAK)
        ),
        expect.ExpectColumnValuesToBeInSet(
            column="dup_within_split", value_set=[False], meta=meta(CHECK_WITHIN_DUPS)
        ),
    ]
    class_table = pd.DataFrame(
        {"class_name": class_names, "train_count": train_counts, "count": all_counts}
    )
    class_expectations = [
        expect.ExpectTableRowCountToBeBetween(
            min_value=int(settings["min_classes"]), meta=meta(CHECK_CLASSES_PRESENT)
        ),
        expect.ExpectColumnValuesToBeBetween(
            column="count", min_value=1, meta=meta(CHECK_CLASSES_PRESENT)
        ),
        expect.ExpectColumnValuesToBeBetween(
            column="train_count",
            min_value=int(settings["min_images_per_class"]),
            meta=meta(CHECK_MIN_PER_CLASS),
        ),
    ]
    figures = {
        CHECK_IMBALANCE: ratio,
        CHECK_CLASS_KL: class_kl,
        "split_kl_max": max(split_kl.values(), default=0.0),
        "drift_kl_max": max(drift.values()) if isinstance(drift, dict) else 0.0,
    }
    figure_table = pd.DataFrame({key: [float(value)] for key, value in figures.items()})
    figure_expectations = [
        expect.ExpectColumnValuesToBeBetween(
            column=name,
            max_value=settings[name][level],
            meta=meta(name, level),
        )
        for name in BAND_CHECKS
        for level in SEVERITIES
    ]
    figure_expectations += [
        expect.ExpectColumnValuesToBeBetween(
            column="split_kl_max", max_value=settings["split_kl_max"], meta=meta(CHECK_SPLIT_KL)
        ),
        expect.ExpectColumnValuesToBeBetween(
            column="drift_kl_max", max_value=settings["drift_kl_max"], meta=meta(CHECK_DRIFT)
        ),
    ]
    # GX's pandas engine cannot compare inf; record undefined figures as a huge finite value.
    figure_table = figure_table.replace([math.inf], 1e300)

    context = _gx_context(data_docs_dir)
    results = _run_suite(context, "images", image_expectations, table)
    results |= _run_suite(context, "classes", class_expectations, class_table)
    results |= _run_suite(context, "dataset", figure_expectations, figure_table)
    if data_docs_dir is not None:
        Path(data_docs_dir).mkdir(parents=True, exist_ok=True)
        context.build_data_docs()

    checks: list[CheckResult] = []

    def add(name: str, observed: Any, expected: str, offending: tuple[list[str], int] = ([], 0)):
        checks.append(
            CheckResult(
                name, _passed(results, name), observed, expected, severity[name], *offending
            )
        )

    failed = table["error"].notna()
    add(
        CHECK_DECODES,
        int(failed.sum()),
        "0 files that fail to decode (zero-byte, truncated, not an image, bomb, outside data/)",
        (
            (table.loc[failed, "path"] + ": " + table.loc[failed, "error"])
            .head(MAX_LISTED)
            .tolist(),
            int(failed.sum()),
        ),
    )
    decoded = table[~failed]
    shapes = (
        decoded.groupby(["height", "width", "channels"]).size().sort_values(ascending=False)
        if len(decoded)
        else pd.Series(dtype=int)
    )
    wrong_shape = ~failed & (
        (table["height"] != height) | (table["width"] != width) | (table["channels"] != channels)
    ).fillna(False)
    add(
        CHECK_IMAGE_SHAPE,
        {f"{h}x{w}x{c}": int(n) for (h, w, c), n in shapes.items()},
        f"every image {height}x{width}x{channels} (height x width x channels)",
        _first(table, wrong_shape),
    )
    out_of_range = (table["pixel_min"] < settings["pixel_min"]) | (
        table["pixel_max"] > settings["pixel_max"]
    )
    add(
        CHECK_PIXEL_RANGE,
        {"min": _number(decoded["pixel_min"].min()), "max": _number(decoded["pixel_max"].max())},
        f"pixels within [{_format_number(settings['pixel_min'])}, "
        f"{_format_number(settings['pixel_max'])}]",
        _first(table, out_of_range.fillna(False)),
    )
    blank_share = float(table["blank"].mean())
    add(
        CHECK_BLANK,
        blank_share,
        f"share of constant (blank) images <= {settings['max_blank_share']}",
        _first(table, table["blank"]),
    )
    unknown = ~table["label_name"].isin(class_names)
    add(
        CHECK_LABEL_SET,
        sorted(set(table.loc[unknown, "label_name"].astype(str))),
        f"class folders exactly the declared {class_names}",
        _first(table, unknown),
    )
    missing = [name for name, count in zip(class_names, all_counts, strict=True) if count == 0]
    add(
        CHECK_CLASSES_PRESENT,
        {"classes": k, "missing": missing},
        f">= {int(settings['min_classes'])} declared classes, each with images",
    )
    below = {
        name: int(count)
        for name, count in zip(class_names, train_counts, strict=True)
        if count < settings["min_images_per_class"]
    }
    add(
        CHECK_MIN_PER_CLASS,
        below or {"min_count": int(train_counts.min())},
        f">= {int(settings['min_images_per_class'])} training images for every class",
    )
    for name, value, what in (
        (CHECK_IMBALANCE, ratio, "largest / smallest training class count"),
        (CHECK_CLASS_KL, class_kl, f"KL(training classes || {expected_source})"),
    ):
        band = settings[name]
        ok = _passed(results, f"{name}:{WARNING}") and _passed(results, f"{name}:{ERROR}")
        in_band = _passed(results, f"{name}:{ERROR}") and not ok
        level = WARNING if in_band else ERROR
        checks.append(
            CheckResult(
                name,
                ok,
                value if math.isfinite(value) else "infinite (a class is empty)",
                f"{what} <= {band[WARNING]} (warning: class weights above), "
                f"<= {band[ERROR]} (error: stop above)",
                level,
            )
        )
    add(
        CHECK_SPLIT_KL,
        split_kl,
        f"KL(split classes || whole dataset) <= {settings['split_kl_max']} for every split",
    )
    add(
        CHECK_EXACT_LEAK,
        len(exact),
        "0 identical images (sha256 of pixels) in more than one split",
        (exact[:MAX_LISTED], len(exact)),
    )
    add(
        CHECK_NEAR_LEAK,
        near_pairs,
        f"0 cross-split pairs with dhash distance <= {int(settings['near_duplicate_distance'])}",
        (near, near_pairs),
    )
    add(
        CHECK_WITHIN_DUPS,
        len(dups),
        "0 groups of identical images within a split",
        (dups[:MAX_LISTED], len(dups)),
    )
    add(
        CHECK_DRIFT,
        drift,
        f"KL vs the last accepted data version <= {settings['drift_kl_max']} "
        "(class distribution, binned pixel mean and std)",
    )

    band_levels = [c for c in checks if c.name in BAND_CHECKS and not c.success]
    try:
        weights: dict[str, float] | None = compute_class_weights(dict(enumerate(train_counts)))
    except ValueError:
        weights = None
    return ValidationReport(
        checks=checks,
        class_counts={str(i): int(c) for i, c in enumerate(train_counts)},
        kl_divergence=class_kl if math.isfinite(class_kl) else None,
        imbalance_ratio=ratio if math.isfinite(ratio) else None,
        class_weights=weights,
        apply_class_weights=bool(band_levels) and weights is not None,
        figures={
            "images": len(table),
            "usable_images": len(usable),
            "expected_distribution": expected_source,
            "split_kl": split_kl,
            "drift": drift,
        },
    )


def _number(value: Any) -> Any:
    """numpy scalar -> Python number; NaN (no decodable image) -> None."""
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# --------------------------------------------------------------------------------------------
# Reports and the stage entry point
# --------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Recursively convert numpy types and round floats so the JSON is byte-stable."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(item) for item in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if not math.isfinite(value):
            return None  # JSON has no inf/nan; None means "undefined" (e.g. an empty class)
        rounded = round(value, FLOAT_DIGITS)
        return 0.0 if rounded == 0 else rounded
    return value


def _write_json(data: Any, path: Path) -> Path:
    """Deterministic JSON (sorted keys), written atomically (temp file + os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, sort_keys=True, indent=2, allow_nan=False) + "\n"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def write_report(report: ValidationReport, path: Path | str = VALIDATION_METRICS) -> Path:
    """Write the report as deterministic JSON: identical data gives identical bytes."""
    return _write_json(report.to_dict(), Path(path))


def validation_markdown(report: ValidationReport | Mapping[str, Any]) -> str:
    """Markdown summary: verdict, class weights, every check, offending files."""
    data = report.to_dict() if isinstance(report, ValidationReport) else dict(report)
    checks = data.get("checks", [])
    verdict = "passed" if data.get("success") else "FAILED: training will not run"
    lines = [f"# Data validation {verdict}", ""]
    if data.get("apply_class_weights"):
        weights = ", ".join(f"{k}: {v:.3g}" for k, v in (data.get("class_weights") or {}).items())
        lines += [
            f"Class imbalance in the warning band: training applies class weights ({weights}).",
            "",
        ]
    lines += [
        "| " + " | ".join(VALIDATION_TABLE_HEADER) + " |",
        "|" + "---|" * len(VALIDATION_TABLE_HEADER),
    ]
    for row in validation_rows(checks):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    for check in checks:
        if check.get("success") or not check.get("offending"):
            continue
        lines += [
            "",
            f"**{check['name']}**: {check.get('offending_count', 0)} offending "
            f"(first {len(check['offending'])}):",
            "",
        ]
        lines += [f"- `{item}`" for item in check["offending"]]
    return "\n".join(lines) + "\n"


def load_class_names(path: Path) -> tuple[list[str], list[int]]:
    """Declared class names and image shape from meta.json."""
    if not path.is_file():
        raise ValidationError(f"{path} not found: run the prepare stage first (dvc repro prepare)")
    meta = json.loads(path.read_text(encoding="utf-8"))
    names = meta.get("class_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or not names:
        raise ValidationError(f"{path} must declare a non-empty 'class_names' list")
    shape = meta.get("image_shape")
    if not isinstance(shape, list) or len(shape) != 3:
        raise ValidationError(f"{path} must declare 'image_shape' as [height, width, channels]")
    return [str(name) for name in names], [int(v) for v in shape]


def load_accepted(path: Path) -> dict[str, Any] | None:
    """The last accepted data version's summary, or None before the first accepted run."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValidationError(f"{path} is not valid JSON ({error}); delete it to reset") from None
    return data if isinstance(data, dict) else None


def _structural_report(message: str) -> ValidationReport:
    """Report written when the input cannot be validated at all, so the metric file exists."""
    check = CheckResult(CHECK_INPUT, False, message, "a readable, non-empty image profile")
    return ValidationReport(checks=[check])


def run_validation(
    root: Path = Path("."),
    params_path: Path | str = PARAMS_FILE,
    data_docs_dir: Path | None = DATA_DOCS_DIR,
) -> ValidationReport:
    """Validate the profile under ``root``; always write the report, record the data version
    as accepted when no error check failed, then raise ValidationError if one did.

    Relative ``params_path`` and ``data_docs_dir`` are resolved against ``root``.
    """
    root = Path(root)
    params_file = Path(params_path)
    if not params_file.is_absolute():
        params_file = root / params_file
    validate_params = section(load_params(params_file), "validate")
    if not isinstance(validate_params, dict):
        raise ParamsError("params.yaml: 'validate' must be a mapping")
    docs_dir = None
    if data_docs_dir is not None:
        docs_dir = Path(data_docs_dir)
        if not docs_dir.is_absolute():
            docs_dir = root / docs_dir
    report_path = root / VALIDATION_METRICS
    try:
        class_names, shape = load_class_names(root / PREPARED_META_FILE)
        try:
            profile = read_profile(root / PROFILE_FILE)
        except FileNotFoundError as error:
            raise ValidationError(str(error)) from None
        accepted = load_accepted(root / ACCEPTED_SUMMARY)
        report = validate_profile(profile, class_names, shape, validate_params, accepted, docs_dir)
    except ValidationError as error:
        write_report(_structural_report(str(error)), report_path)
        raise
    write_report(report, report_path)
    if not report.success:
        raise ValidationError.from_report(report)
    summary = summarise(profile, class_names, _settings(validate_params))
    _write_json(_jsonable(summary), root / ACCEPTED_SUMMARY)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """CLI for ``python -m tasks.validate``: 0 when no error check failed, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root")
    parser.add_argument("--params", type=Path, default=PARAMS_FILE, help="params file")
    parser.add_argument(
        "--no-data-docs", action="store_true", help=f"skip the HTML site in {DATA_DOCS_DIR}"
    )
    args = parser.parse_args(argv)
    try:
        report = run_validation(
            args.root, args.params, None if args.no_data_docs else DATA_DOCS_DIR
        )
    except ValidationError as error:
        print(f"Data validation failed — training will not run:\n{error}", file=sys.stderr)
        return 1
    except ParamsError as error:
        print(f"Data validation could not start: {error}", file=sys.stderr)
        return 1
    for check in report.warnings:
        print(f"warning: {check.describe()}", file=sys.stderr)
    weights = " -> training applies class weights" if report.apply_class_weights else ""
    kl = "n/a" if report.kl_divergence is None else f"{report.kl_divergence:.4f}"
    ratio = "n/a" if report.imbalance_ratio is None else f"{report.imbalance_ratio:.2f}"
    print(
        f"Data validation passed: {len(report.checks)} checks, {len(report.warnings)} warning(s), "
        f"{sum(report.class_counts.values())} training images, imbalance {ratio}, "
        f"class KL {kl}{weights} -> {VALIDATION_METRICS}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
