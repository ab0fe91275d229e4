"""Data validation stage: check the prepared image splits with Great Expectations before training.

The prepare step writes ``artifacts/prepared/splits.npz`` and ``meta.json``; this step turns the
images into a one-row-per-image table, runs a Great Expectations suite over it (label set, class
presence, pixel range, image shape, per-class counts, class balance) and writes a deterministic
JSON report to ``metrics/validation.json``. A failed check stops the pipeline (exit status 1), so
a broken dataset never reaches training. Run by DVC as ``python -m tasks.validate``.
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
from tasks.paths import (
    DATA_DOCS_DIR,
    PARAMS_FILE,
    PREPARED_META_FILE,
    SPLITS_FILE,
    VALIDATION_METRICS,
)

if TYPE_CHECKING:
    import pandas as pd

TRAIN_SPLIT = "train"
SPLIT_ORDER: tuple[str, ...] = ("train", "val", "test")
FLOAT_DIGITS = 6

CHECK_LABELS_IN_SET = "labels within declared classes"
CHECK_CLASSES_PRESENT = "every class present in train"
CHECK_PIXEL_RANGE = "pixel range"
CHECK_IMAGE_SHAPE = "consistent image shape"
CHECK_MIN_PER_CLASS = "min images per class in train"
CHECK_CLASS_BALANCE = "class balance (KL vs uniform) in train"
CHECK_INPUT = "input structure"

TABLE_COLUMNS: tuple[str, ...] = (
    "label",
    "split",
    "height",
    "width",
    "channels",
    "pixel_min",
    "pixel_max",
    "pixel_mean",
)
PARAM_KEYS: tuple[str, ...] = (
    "pixel_min",
    "pixel_max",
    "min_images_per_class",
    "kl_divergence_max",
)


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one named check: what was observed and what was expected (as text)."""

    name: str
    success: bool
    observed: Any
    expected: str

    def describe(self) -> str:
        """One human-readable line, e.g. 'pixel range: observed {...}, expected <= 255'."""
        return f"{self.name}: observed {self.observed!r}, expected {self.expected}"


@dataclass
class ValidationReport:
    """Everything the validation step found; serialised to metrics/validation.json."""

    success: bool
    checks: list[CheckResult]
    class_counts: dict[str, int] = field(default_factory=dict)
    kl_divergence: float | None = None
    imbalance_ratio: float | None = None
    class_weights: dict[str, float] | None = None

    @property
    def failures(self) -> list[CheckResult]:
        """The checks that did not pass, in report order."""
        return [check for check in self.checks if not check.success]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (numpy scalars converted, floats rounded to 6 decimals)."""
        raw = {
            "success": self.success,
            "checks": [asdict(check) for check in self.checks],
            "failed_checks": [check.name for check in self.failures],
            "class_counts": self.class_counts,
            "kl_divergence": self.kl_divergence,
            "imbalance_ratio": self.imbalance_ratio,
            "class_weights": self.class_weights,
        }
        return _jsonable(raw)


class ValidationError(Exception):
    """The dataset failed validation; ``report`` is None for structural input errors."""

    def __init__(self, message: str, report: ValidationReport | None = None) -> None:
        super().__init__(message)
        self.report = report

    @classmethod
    def from_report(cls, report: ValidationReport) -> ValidationError:
        """Build the error whose message lists every failed check on its own line."""
        lines = [f"  - {check.describe()}" for check in report.failures]
        return cls(f"{len(lines)} data check(s) failed:\n" + "\n".join(lines), report)


# --------------------------------------------------------------------------------------------
# Table building and plain computations
# --------------------------------------------------------------------------------------------


def build_image_table(x: np.ndarray, y: np.ndarray, split: np.ndarray | list) -> pd.DataFrame:
    """One row per image with its label, split, shape and pixel statistics (vectorised).

    GX validates tables, not tensors: summarising each image into a row lets column
    expectations check labels, shapes and pixel ranges without a per-image Python loop.
    """
    import pandas as pd

    x = np.asarray(x)
    y = np.asarray(y)
    split = np.asarray(split)
    if x.ndim != 4:
        raise ValidationError(
            f"images must be a 4-D array (N, height, width, channels), got shape {x.shape}"
        )
    if y.ndim != 1:
        raise ValidationError(f"labels must be a 1-D array of class indices, got shape {y.shape}")
    if len(x) != len(y):
        raise ValidationError(f"{len(x)} images but {len(y)} labels: lengths must match")
    if split.ndim == 0:
        split = np.full(len(y), split.item(), dtype=object)
    if len(split) != len(y):
        raise ValidationError(f"{len(y)} labels but {len(split)} split names: lengths must match")
    if len(y) and not np.issubdtype(y.dtype, np.integer):
        raise ValidationError(f"labels must be integer class indices, got dtype {y.dtype}")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise ValidationError(f"images must hold numbers, got dtype {x.dtype}")

    n, height, width, channels = x.shape
    flat = x.reshape(n, -1) if n else np.zeros((0, 1), dtype=x.dtype)
    pixel_dtype = np.float64 if np.issubdtype(x.dtype, np.floating) else np.int64
    return pd.DataFrame(
        {
            "label": y.astype(np.int64),
            "split": split.astype(str).astype(object),
            "height": np.full(n, height, dtype=np.int64),
            "width": np.full(n, width, dtype=np.int64),
            "channels": np.full(n, channels, dtype=np.int64),
            "pixel_min": flat.min(axis=1).astype(pixel_dtype) if n else np.zeros(0, pixel_dtype),
            "pixel_max": flat.max(axis=1).astype(pixel_dtype) if n else np.zeros(0, pixel_dtype),
            "pixel_mean": flat.mean(axis=1, dtype=np.float64) if n else np.zeros(0),
        },
        columns=list(TABLE_COLUMNS),
    )


def compute_class_weights(counts: Mapping[Any, int]) -> dict[str, float]:
    """Balanced class weights n_total / (k * n_c), as sklearn's class_weight="balanced".

    Training can pass them to Keras ``class_weight`` to offset a mild imbalance; keys are the
    class ids as strings. Raises ValueError when a class has no images (weight undefined).
    """
    if not counts:
        raise ValueError("class weights need at least one class")
    bad = {str(key): int(value) for key, value in counts.items() if int(value) <= 0}
    if bad:
        raise ValueError(f"class weights undefined for classes without images: {bad}")
    total = sum(int(value) for value in counts.values())
    k = len(counts)
    return {str(key): total / (k * int(value)) for key, value in counts.items()}


def kl_divergence_from_uniform(counts: Sequence[int]) -> float:
    """KL(observed || uniform) in nats, the statistic ExpectColumnKLDivergenceToBeLessThan uses."""
    observed = np.asarray(counts, dtype=np.float64)
    if observed.size == 0 or observed.sum() <= 0:
        return math.inf
    p = observed / observed.sum()
    nonzero = p > 0
    return float(np.sum(p[nonzero] * np.log(p[nonzero] * len(p))))


def _imbalance_ratio(counts: Sequence[int]) -> float | None:
    """Largest over smallest class count; None when a class is empty (ratio infinite)."""
    if not counts or min(counts) <= 0:
        return None
    return max(counts) / min(counts)


def _validate_params(params: Mapping[str, Any]) -> dict[str, float]:
    """Pull the four thresholds from the ``validate`` section, naming any bad key."""
    values: dict[str, float] = {}
    for key in PARAM_KEYS:
        if key not in params:
            raise ParamsError(f"params.yaml: missing key 'validate.{key}'")
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamsError(f"params.yaml: 'validate.{key}' must be a number, got {value!r}")
        values[key] = value
    if values["pixel_min"] > values["pixel_max"]:
        raise ParamsError("params.yaml: 'validate.pixel_min' must not exceed 'validate.pixel_max'")
    if values["min_images_per_class"] < 0 or values["kl_divergence_max"] < 0:
        raise ParamsError(
            "params.yaml: 'validate.min_images_per_class' and 'validate.kl_divergence_max' "
            "must be >= 0"
        )
    return values


def _ordered_splits(names: Sequence[str]) -> list[str]:
    """train, val, test first (pipeline order), then any other split alphabetically."""
    known = [name for name in SPLIT_ORDER if name in names]
    return known + sorted(name for name in names if name not in SPLIT_ORDER)


def _build_table(
    x_by_split: Mapping[str, np.ndarray], y_by_split: Mapping[str, np.ndarray]
) -> pd.DataFrame:
    """Concatenate the per-split tables (splits may differ in shape, so no array concat)."""
    import pandas as pd

    if not x_by_split:
        raise ValidationError("no splits given: the dataset is empty")
    if set(x_by_split) != set(y_by_split):
        raise ValidationError(
            f"image splits {sorted(x_by_split)} and label splits {sorted(y_by_split)} differ"
        )
    tables = []
    for name in _ordered_splits(list(x_by_split)):
        try:
            tables.append(build_image_table(x_by_split[name], y_by_split[name], name))
        except ValidationError as error:
            raise ValidationError(f"split '{name}': {error}") from None
    table = pd.concat(tables, ignore_index=True)
    if table.empty:
        sizes = {name: len(y_by_split[name]) for name in x_by_split}
        raise ValidationError(f"the dataset is empty: no images in any split {sizes}")
    return table


# --------------------------------------------------------------------------------------------
# Great Expectations
# --------------------------------------------------------------------------------------------


def _quiet_gx() -> None:
    """Silence GX progress bars, analytics and renderer log noise (stage logs stay readable)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    # GX 1.24's HTML renderer logs a full traceback at ERROR level when it renders a failed
    # distinct-values expectation (it looks up a missing 'unexpected_percent'); the page is
    # still written and the JSON report is unaffected, so keep that cosmetic noise out.
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
    """Validate ``frame`` against ``expectations``; results grouped by their ``meta['check']``.

    GX does not return results in insertion order, so every expectation carries the name of
    the check it belongs to and results are looked up by that name.
    """
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
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": 20},
    )
    grouped: dict[str, list[Any]] = {}
    for result in outcome.results:
        check = (result.expectation_config.meta or {}).get("check", "unknown")
        grouped.setdefault(check, []).append(result)
    return grouped


def _succeeded(results: list[Any]) -> bool:
    return bool(results) and all(bool(result.success) for result in results)


def _gx_error(results: list[Any]) -> str | None:
    """The exception message when GX could not evaluate an expectation, else None."""
    for result in results:
        info = result.exception_info or {}
        if info.get("raised_exception"):
            return f"error: {info.get('exception_message')}"
    return None


def _listed(result: Any, count_key: str, list_key: str) -> Any:
    """GX's capped value list as sorted ints, or {count, first} when GX truncated it."""
    values = sorted(int(value) for value in result.result.get(list_key, []))
    count = int(result.result.get(count_key, len(values)) or 0)
    if count > len(values):
        return {"count": count, "first": values}
    return values


def _number(value: Any) -> Any:
    """numpy scalar -> Python number (GX returns np.int64 observed values)."""
    return value.item() if isinstance(value, np.generic) else value


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def validate_dataset(
    x_by_split: dict[str, np.ndarray],
    y_by_split: dict[str, np.ndarray],
    class_names: list[str],
    params: dict,
    data_docs_dir: Path | None = None,
) -> ValidationReport:
    """Run the validation suite over all splits and return the report (never raises on a
    failed check: inspect ``report.success``).

    Label set, pixel range and image shape are checked on every image of every split; class
    presence, per-class minimum, balance and class weights use the training split (the one
    the model learns from; prepare stratifies val/test by class). Raises ValidationError for
    input that cannot be validated at all (empty, mismatched lengths, not 4-D) and
    ParamsError for bad thresholds. With ``data_docs_dir`` an HTML Data Docs site is also
    written there.
    """
    limits = _validate_params(params)
    if not class_names:
        raise ValidationError("class_names is empty: meta.json must declare at least one class")
    table = _build_table(x_by_split, y_by_split)
    _quiet_gx()
    import great_expectations as gx
    import pandas as pd

    expect = gx.expectations
    ids = list(range(len(class_names)))
    k = len(ids)
    train = table[table["split"] == TRAIN_SPLIT] if TRAIN_SPLIT in x_by_split else table
    observed_counts = train["label"].value_counts()
    declared_counts = [int(observed_counts.get(class_id, 0)) for class_id in ids]
    counts_table = pd.DataFrame({"label": ids, "count": declared_counts}, dtype=np.int64)
    min_images = int(limits["min_images_per_class"])
    kl_max = float(limits["kl_divergence_max"])

    def meta(check: str) -> dict[str, str]:
        return {"check": check}

    image_expectations = [
        expect.ExpectColumnDistinctValuesToBeInSet(
            column="label", value_set=ids, meta=meta(CHECK_LABELS_IN_SET)
        ),
        expect.ExpectColumnMinToBeBetween(
            column="pixel_min", min_value=limits["pixel_min"], meta=meta(CHECK_PIXEL_RANGE)
        ),
        expect.ExpectColumnMaxToBeBetween(
            column="pixel_max", max_value=limits["pixel_max"], meta=meta(CHECK_PIXEL_RANGE)
        ),
        *(
            expect.ExpectColumnUniqueValueCountToBeBetween(
                column=column, min_value=1, max_value=1, meta=meta(CHECK_IMAGE_SHAPE)
            )
            for column in ("height", "width", "channels")
        ),
    ]
    train_expectations = [
        expect.ExpectColumnDistinctValuesToContainSet(
            column="label", value_set=ids, meta=meta(CHECK_CLASSES_PRESENT)
        ),
        expect.ExpectColumnKLDivergenceToBeLessThan(
            column="label",
            partition_object={"values": ids, "weights": [1.0 / k] * k},
            threshold=kl_max,
            meta=meta(CHECK_CLASS_BALANCE),
        ),
    ]
    count_expectations = [
        expect.ExpectColumnMinToBeBetween(
            column="count", min_value=min_images, meta=meta(CHECK_MIN_PER_CLASS)
        ),
    ]

    context = _gx_context(data_docs_dir)
    results = _run_suite(context, "images", image_expectations, table)
    if train.empty:
        # GX cannot compute a distribution over zero rows; report the obvious failure directly.
        train_results: dict[str, list[Any]] = {}
    else:
        train_results = _run_suite(context, "train_labels", train_expectations, train)
    results.update(train_results)
    results.update(_run_suite(context, "class_counts", count_expectations, counts_table))
    if data_docs_dir is not None:
        Path(data_docs_dir).mkdir(parents=True, exist_ok=True)
        context.build_data_docs()

    checks: list[CheckResult] = []

    # 1. labels within the declared class ids
    found = results[CHECK_LABELS_IN_SET]
    checks.append(
        CheckResult(
            CHECK_LABELS_IN_SET,
            _succeeded(found),
            _gx_error(found) or _listed(found[0], "unexpected_count", "partial_unexpected_list"),
            f"labels in 0..{k - 1} ({k} declared classes)",
        )
    )

    # 2. every declared class present in the training split
    found = train_results.get(CHECK_CLASSES_PRESENT, [])
    if found:
        missing: Any = _gx_error(found) or _listed(
            found[0], "missing_count", "partial_missing_list"
        )
    else:
        missing = ids
    checks.append(
        CheckResult(
            CHECK_CLASSES_PRESENT,
            _succeeded(found),
            missing,
            f"all {k} classes 0..{k - 1} present in '{train_split_name(x_by_split)}'",
        )
    )

    # 3. pixel range over all images
    found = results[CHECK_PIXEL_RANGE]
    pixel_observed: Any = _gx_error(found) or {
        "min": _number(table["pixel_min"].min()),
        "max": _number(table["pixel_max"].max()),
    }
    checks.append(
        CheckResult(
            CHECK_PIXEL_RANGE,
            _succeeded(found),
            pixel_observed,
            f"pixels within [{_format_number(limits['pixel_min'])}, "
            f"{_format_number(limits['pixel_max'])}]",
        )
    )

    # 4. one image shape across all splits
    found = results[CHECK_IMAGE_SHAPE]
    shapes = (
        table.groupby("split", sort=False)[["height", "width", "channels"]]
        .first()
        .astype(int)
        .apply(list, axis=1)
        .to_dict()
    )
    checks.append(
        CheckResult(
            CHECK_IMAGE_SHAPE,
            _succeeded(found),
            _gx_error(found) or {name: shapes[name] for name in sorted(shapes)},
            "one (height, width, channels) shape for every image in every split",
        )
    )

    # 5. minimum images per class in the training split
    found = results[CHECK_MIN_PER_CLASS]
    below = {str(i): c for i, c in zip(ids, declared_counts, strict=True) if c < min_images}
    checks.append(
        CheckResult(
            CHECK_MIN_PER_CLASS,
            _succeeded(found),
            _gx_error(found) or (below if below else {"min_count": min(declared_counts)}),
            f">= {min_images} images for every class",
        )
    )

    # 6. class balance: KL(observed || uniform) below the threshold
    found = train_results.get(CHECK_CLASS_BALANCE, [])
    kl_value: float | None = None
    if found and _gx_error(found) is None:
        raw_kl = found[0].result.get("observed_value")
        kl_value = None if raw_kl is None else float(raw_kl)
    balance_observed: Any = _gx_error(found) if found else None
    if balance_observed is None:
        balance_observed = kl_value if kl_value is not None else "infinite (undefined)"
    checks.append(
        CheckResult(
            CHECK_CLASS_BALANCE,
            _succeeded(found) and kl_value is not None,
            balance_observed,
            f"KL divergence <= {kl_max}",
        )
    )

    class_counts = {
        str(class_id): count for class_id, count in zip(ids, declared_counts, strict=True)
    }
    for label, count in observed_counts.items():
        if int(label) not in ids:
            class_counts[str(int(label))] = int(count)
    try:
        weights: dict[str, float] | None = compute_class_weights(
            dict(zip(ids, declared_counts, strict=True))
        )
    except ValueError:
        weights = None

    return ValidationReport(
        success=all(check.success for check in checks),
        checks=checks,
        class_counts=class_counts,
        kl_divergence=kl_value,
        imbalance_ratio=_imbalance_ratio(declared_counts),
        class_weights=weights,
    )


def train_split_name(x_by_split: Mapping[str, Any]) -> str:
    """Which split's class distribution is checked: 'train', or all rows when there is none."""
    return TRAIN_SPLIT if TRAIN_SPLIT in x_by_split else "all splits"


# --------------------------------------------------------------------------------------------
# Report writing and the stage entry point
# --------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Recursively convert numpy types and round floats so the JSON is byte-stable."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return [_jsonable(item) for item in value.tolist()]
    if isinstance(value, float):
        if not math.isfinite(value):
            return None  # JSON has no inf/nan; the report documents None as "undefined"
        rounded = round(value, FLOAT_DIGITS)
        return 0.0 if rounded == 0 else rounded
    return value


def write_report(report: ValidationReport, path: Path | str = VALIDATION_METRICS) -> Path:
    """Write the report as deterministic JSON (sorted keys, rounded floats), atomically.

    DVC tracks this file as a metric and downstream stages depend on it, so identical input
    must give identical bytes; temp file + os.replace means a crash never leaves half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report.to_dict(), sort_keys=True, indent=2, allow_nan=False) + "\n"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def load_splits(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Read splits.npz into {split: images} and {split: labels} (keys x_<split>, y_<split>)."""
    if not path.is_file():
        raise ValidationError(f"{path} not found: run the prepare stage first (dvc repro prepare)")
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    x_by_split = {key[2:]: value for key, value in arrays.items() if key.startswith("x_")}
    y_by_split = {key[2:]: value for key, value in arrays.items() if key.startswith("y_")}
    if not x_by_split:
        raise ValidationError(f"{path} holds no x_<split> arrays (found {sorted(arrays)})")
    return x_by_split, y_by_split


def load_class_names(path: Path) -> list[str]:
    """Declared class names from meta.json; class ids are range(len(class_names))."""
    if not path.is_file():
        raise ValidationError(f"{path} not found: run the prepare stage first (dvc repro prepare)")
    meta = json.loads(path.read_text(encoding="utf-8"))
    names = meta.get("class_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or not names:
        raise ValidationError(f"{path} must declare a non-empty 'class_names' list")
    return [str(name) for name in names]


def _structural_report(message: str) -> ValidationReport:
    """Report written when the input cannot be validated at all, so the metric file exists."""
    check = CheckResult(CHECK_INPUT, False, message, "readable, non-empty 4-D image splits")
    return ValidationReport(success=False, checks=[check])


def run_validation(
    root: Path = Path("."),
    params_path: Path | str = PARAMS_FILE,
    data_docs_dir: Path | None = DATA_DOCS_DIR,
) -> ValidationReport:
    """Validate the prepared splits under ``root``; always write the report, then raise
    ValidationError if any check failed (DVC then stops before training).

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
        x_by_split, y_by_split = load_splits(root / SPLITS_FILE)
        class_names = load_class_names(root / PREPARED_META_FILE)
        report = validate_dataset(x_by_split, y_by_split, class_names, validate_params, docs_dir)
    except ValidationError as error:
        write_report(_structural_report(str(error)), report_path)
        raise
    write_report(report, report_path)
    if not report.success:
        raise ValidationError.from_report(report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """CLI for ``python -m tasks.validate``: 0 when the data is valid, 1 otherwise."""
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
    total = sum(report.class_counts.values())
    kl = "n/a" if report.kl_divergence is None else f"{report.kl_divergence:.4f}"
    print(
        f"Data validation passed: {len(report.checks)} checks, {len(report.class_counts)} classes, "
        f"{total} training images, KL vs uniform {kl} -> {VALIDATION_METRICS}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
