"""Every data check, declared once: its name, the GX expectations that decide it, how its
observed value and offending files are read from the facts, and its threshold text.

The Great Expectations suites (gx_suite.py) and the report rows are both derived from CHECKS, so
adding a check is one declaration here (plus its test). A check has either a severity key in
params.yaml (`validate.severity.<name>`) or a warning/error band (`band`), never both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from tasks.params import Band, ParamsError, ValidateParams
from tasks.validation.facts import MAX_UPSCALE, Facts
from tasks.validation.report import ERROR, MAX_LISTED, WARNING, CheckResult

if TYPE_CHECKING:
    import pandas as pd

Table = Literal["images", "classes", "dataset"]  # which GX batch a check's expectations run on
TABLES: tuple[Table, ...] = ("images", "classes", "dataset")
Level = Literal["error", "warning"] | None  # the band level an expectation checks (None: single)


@dataclass(frozen=True)
class Expect:
    """One Great Expectations expectation: its class name in `gx.expectations` and arguments."""

    kind: str
    kwargs: dict[str, Any]
    level: Level = None


@dataclass(frozen=True)
class Observation:
    """What a check saw: the observed value and the first offending files (and their count)."""

    observed: Any
    offending: list[str] = field(default_factory=list)
    offending_count: int = 0


@dataclass(frozen=True)
class Check:
    """One data check: where its expectations run, what they are, what the report says."""

    name: str
    table: Table
    expectations: Callable[[ValidateParams, Facts], list[Expect]]
    observe: Callable[[Facts, ValidateParams], Observation]
    threshold: Callable[[ValidateParams, Facts], str]
    figures: Callable[[Facts], dict[str, float]] | None = None  # columns of the dataset table
    band: Callable[[ValidateParams], Band] | None = None  # two thresholds instead of a severity

    def result(
        self, passed: Mapping[tuple[str, Level], bool], params: ValidateParams, facts: Facts
    ) -> CheckResult:
        """The report entry, from the outcome of this check's expectations."""
        seen = self.observe(facts, params)
        if self.band is None:
            success = passed.get((self.name, None), False)
            severity = params.severity[self.name]
        else:
            below_error = passed.get((self.name, ERROR), False)
            success = below_error and passed.get((self.name, WARNING), False)
            severity = WARNING if below_error and not success else ERROR
        return CheckResult(
            self.name,
            success,
            seen.observed,
            self.threshold(params, facts),
            severity,
            seen.offending,
            seen.offending_count,
        )


def _first(facts: Facts, mask: Any) -> tuple[list[str], int]:
    """Paths of the first MAX_LISTED rows of the image table selected by ``mask``, and how many."""
    selected = facts.images.loc[mask, "path"]
    return selected.head(MAX_LISTED).astype(str).tolist(), len(selected)


def _listed(items: list[str], count: int | None = None) -> tuple[list[str], int]:
    return items[:MAX_LISTED], len(items) if count is None else count


def _number(value: Any) -> Any:
    """numpy scalar -> Python number; NaN (no decodable image) -> None."""
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _not_flagged(column: str) -> Callable[[ValidateParams, Facts], list[Expect]]:
    """Expectations: no image of the table has the boolean flag ``column`` set."""
    return lambda params, facts: [
        Expect("ExpectColumnValuesToBeInSet", {"column": column, "value_set": [False]})
    ]


def _decode_failed(facts: Facts) -> pd.Series:
    return facts.images["error"].notna()


# -- upscaling, blank_after_resize (the image policy) ----------------------------------------


def _observe_upscaled(facts: Facts, params: ValidateParams) -> Observation:
    table = facts.images
    upscaled = table[table["upscaled"]].sort_values("upscale", ascending=False, kind="stable")
    pairs = zip(upscaled["path"], upscaled["upscale"], strict=True)
    listed = [f"{path} (x{factor:g})" for path, factor in pairs]
    observed = {"images": len(upscaled), "max_factor": _number(table["upscale"].max())}
    return Observation(observed, listed[:MAX_LISTED], len(upscaled))


def _observe_blank_after_resize(facts: Facts, params: ValidateParams) -> Observation:
    blank = facts.images["blank_after_resize"]
    return Observation(int(blank.sum()), *_first(facts, blank))


# -- decodes ---------------------------------------------------------------------------------


def _observe_decodes(facts: Facts, params: ValidateParams) -> Observation:
    table, failed = facts.images, _decode_failed(facts)
    reasons = table.loc[failed, "path"] + ": " + table.loc[failed, "error"]
    count = int(failed.sum())
    return Observation(count, reasons.head(MAX_LISTED).tolist(), count)


# -- image_shape -----------------------------------------------------------------------------


def _shape_expectations(params: ValidateParams, facts: Facts) -> list[Expect]:
    columns = ("height", "width", "channels")
    return [
        Expect("ExpectColumnValuesToBeInSet", {"column": column, "value_set": [value]})
        for column, value in zip(columns, facts.image_shape, strict=True)
    ]


def _observe_shape(facts: Facts, params: ValidateParams) -> Observation:
    table, failed = facts.images, _decode_failed(facts)
    decoded = table[~failed]
    observed: dict[str, int] = {}
    if len(decoded):
        shapes = decoded.groupby(["height", "width", "channels"]).size()
        for (h, w, c), n in shapes.sort_values(ascending=False).items():
            observed[f"{h}x{w}x{c}"] = int(n)
    height, width, channels = facts.image_shape
    wrong = ~failed & (
        (table["height"] != height) | (table["width"] != width) | (table["channels"] != channels)
    ).fillna(False)
    return Observation(observed, *_first(facts, wrong))


def _shape_threshold(params: ValidateParams, facts: Facts) -> str:
    height, width, channels = facts.image_shape
    return f"every image {height}x{width}x{channels} (height x width x channels){_shape_fix(facts)}"


def _shape_fix(facts: Facts) -> str:
    """The params.yaml line that gives mixed images one shape (empty when they share one)."""
    decoded = facts.images[~_decode_failed(facts)]
    lines = []
    sizes = decoded.groupby(["height", "width"]).size()
    if len(sizes) > 1:
        height, width = sizes.sort_values(ascending=False, kind="stable").index[0]
        lines.append(f"image_size: [{height}, {width}]")
    if decoded["channels"].nunique() > 1:
        lines.append(f"color_mode: {'rgb' if (decoded['channels'] >= 3).any() else 'grayscale'}")
    if not lines:
        return ""
    return (
        "; the images differ, so declare an image policy: add `"
        + "` and `".join(lines)
        + "` under `prepare:` in params.yaml (prepare then resizes/converts every image)"
    )


# -- pixel_range -----------------------------------------------------------------------------


def _pixel_expectations(params: ValidateParams, facts: Facts) -> list[Expect]:
    return [
        Expect(
            "ExpectColumnMinToBeBetween", {"column": "pixel_min", "min_value": params.pixel_min}
        ),
        Expect(
            "ExpectColumnMaxToBeBetween", {"column": "pixel_max", "max_value": params.pixel_max}
        ),
    ]


def _observe_pixels(facts: Facts, params: ValidateParams) -> Observation:
    table = facts.images
    decoded = table[~_decode_failed(facts)]
    outside = (table["pixel_min"] < params.pixel_min) | (table["pixel_max"] > params.pixel_max)
    observed = {
        "min": _number(decoded["pixel_min"].min()),
        "max": _number(decoded["pixel_max"].max()),
    }
    return Observation(observed, *_first(facts, outside.fillna(False)))


def _pixel_threshold(params: ValidateParams, facts: Facts) -> str:
    return f"pixels within [{_format_number(params.pixel_min)}, {_format_number(params.pixel_max)}]"


# -- blank_images, label_set -----------------------------------------------------------------


def _blank_expectations(params: ValidateParams, facts: Facts) -> list[Expect]:
    mostly = max(0.0, 1.0 - float(params.max_blank_share))
    return [
        Expect(
            "ExpectColumnValuesToBeInSet",
            {"column": "blank", "value_set": [False], "mostly": mostly},
        )
    ]


def _observe_blank(facts: Facts, params: ValidateParams) -> Observation:
    blank = facts.images["blank"]
    return Observation(float(blank.mean()), *_first(facts, blank))


def _label_expectations(params: ValidateParams, facts: Facts) -> list[Expect]:
    return [
        Expect(
            "ExpectColumnValuesToBeInSet",
            {"column": "label_name", "value_set": facts.class_names},
        )
    ]


def _observe_labels(facts: Facts, params: ValidateParams) -> Observation:
    table = facts.images
    unknown = ~table["label_name"].isin(facts.class_names)
    names = sorted(set(table.loc[unknown, "label_name"].astype(str)))
    return Observation(names, *_first(facts, unknown))


# -- classes_present, min_images_per_class ---------------------------------------------------


def _present_expectations(params: ValidateParams, facts: Facts) -> list[Expect]:
    return [
        Expect("ExpectTableRowCountToBeBetween", {"min_value": int(params.min_classes)}),
        Expect("ExpectColumnValuesToBeBetween", {"column": "count", "min_value": 1}),
    ]


def _observe_present(facts: Facts, params: ValidateParams) -> Observation:
    counts = zip(facts.class_names, facts.all_counts, strict=True)
    missing = [name for name, count in counts if count == 0]
    return Observation({"classes": len(facts.class_names), "missing": missing})


def _per_class_expectations(params: ValidateParams, facts: Facts) -> list[Expect]:
    minimum = int(params.min_images_per_class)
    return [
        Expect("ExpectColumnValuesToBeBetween", {"column": "train_count", "min_value": minimum})
    ]


def _observe_per_class(facts: Facts, params: ValidateParams) -> Observation:
    counts = zip(facts.class_names, facts.train_counts, strict=True)
    below = {name: int(n) for name, n in counts if n < params.min_images_per_class}
    return Observation(below or {"min_count": int(facts.train_counts.min())})


# -- the dataset figures: imbalance_ratio, class_kl, split_distribution, drift ---------------


def _at_most(column: str, value: Callable[[ValidateParams], float]) -> Callable[..., list[Expect]]:
    """Expectations: the dataset table's one value in ``column`` is at most ``value(params)``."""
    return lambda params, facts: [
        Expect("ExpectColumnValuesToBeBetween", {"column": column, "max_value": value(params)})
    ]


def _within_band(name: str) -> Callable[[ValidateParams, Facts], list[Expect]]:
    """Expectations: the figure ``name`` is below its error threshold and below its warning."""

    def expectations(params: ValidateParams, facts: Facts) -> list[Expect]:
        band: Band = getattr(params, name)
        return [
            Expect(
                "ExpectColumnValuesToBeBetween", {"column": name, "max_value": band.error}, ERROR
            ),
            Expect(
                "ExpectColumnValuesToBeBetween",
                {"column": name, "max_value": band.warning},
                WARNING,
            ),
        ]

    return expectations


def _band_figure(value: float) -> Observation:
    return Observation(value if math.isfinite(value) else "infinite (a class is empty)")


def _band_threshold(what: str, band: Band) -> str:
    return (
        f"{what} <= {band.warning} (warning: class weights above), "
        f"<= {band.error} (error: stop above)"
    )


def _drift_max(facts: Facts) -> float:
    return max(facts.drift.values()) if isinstance(facts.drift, dict) else 0.0


CHECKS: tuple[Check, ...] = (
    Check(
        "decodes",
        "images",
        lambda params, facts: [Expect("ExpectColumnValuesToBeNull", {"column": "error"})],
        _observe_decodes,
        lambda params, facts: (
            "0 files that fail to decode (zero-byte, truncated, not an image, bomb, outside data/)"
        ),
    ),
    Check("image_shape", "images", _shape_expectations, _observe_shape, _shape_threshold),
    Check("pixel_range", "images", _pixel_expectations, _observe_pixels, _pixel_threshold),
    Check(
        "upscaling",
        "images",
        _not_flagged("upscaled"),
        _observe_upscaled,
        lambda params, facts: (
            f"no image enlarged more than {MAX_UPSCALE:g}x by the image policy "
            "(blurry: use larger source images or a smaller prepare.image_size)"
        ),
    ),
    Check(
        "blank_after_resize",
        "images",
        _not_flagged("blank_after_resize"),
        _observe_blank_after_resize,
        lambda params, facts: (
            "no image that becomes (nearly) blank when resized "
            "(its content is too thin or small for prepare.image_size)"
        ),
    ),
    Check(
        "blank_images",
        "images",
        _blank_expectations,
        _observe_blank,
        lambda params, facts: f"share of constant (blank) images <= {params.max_blank_share}",
    ),
    Check(
        "label_set",
        "images",
        _label_expectations,
        _observe_labels,
        lambda params, facts: f"class folders exactly the declared {facts.class_names}",
    ),
    Check(
        "classes_present",
        "classes",
        _present_expectations,
        _observe_present,
        lambda params, facts: f">= {params.min_classes} declared classes, each with images",
    ),
    Check(
        "min_images_per_class",
        "classes",
        _per_class_expectations,
        _observe_per_class,
        lambda params, facts: f">= {params.min_images_per_class} training images for every class",
    ),
    Check(
        "imbalance_ratio",
        "dataset",
        _within_band("imbalance_ratio"),
        lambda facts, params: _band_figure(facts.imbalance),
        lambda params, facts: _band_threshold(
            "largest / smallest training class count", params.imbalance_ratio
        ),
        figures=lambda facts: {"imbalance_ratio": facts.imbalance},
        band=lambda params: params.imbalance_ratio,
    ),
    Check(
        "class_kl",
        "dataset",
        _within_band("class_kl"),
        lambda facts, params: _band_figure(facts.class_kl),
        lambda params, facts: _band_threshold(
            f"KL(training classes || {facts.expected_source})", params.class_kl
        ),
        figures=lambda facts: {"class_kl": facts.class_kl},
        band=lambda params: params.class_kl,
    ),
    Check(
        "split_distribution",
        "dataset",
        _at_most("split_kl_max", lambda params: params.split_kl_max),
        lambda facts, params: Observation(facts.split_kl),
        lambda params, facts: (
            f"KL(split classes || whole dataset) <= {params.split_kl_max} for every split"
        ),
        figures=lambda facts: {"split_kl_max": max(facts.split_kl.values(), default=0.0)},
    ),
    Check(
        "exact_leakage",
        "images",
        _not_flagged("exact_leak"),
        lambda facts, params: Observation(
            len(facts.duplicates.exact), *_listed(facts.duplicates.exact)
        ),
        lambda params, facts: "0 identical images (sha256 of pixels) in more than one split",
    ),
    Check(
        "near_leakage",
        "images",
        _not_flagged("near_leak"),
        lambda facts, params: Observation(
            facts.duplicates.near_pairs,
            *_listed(facts.duplicates.near, facts.duplicates.near_pairs),
        ),
        lambda params, facts: (
            f"0 cross-split pairs with dhash distance <= {params.near_duplicate_distance}"
        ),
    ),
    Check(
        "within_split_duplicates",
        "images",
        _not_flagged("dup_within_split"),
        lambda facts, params: Observation(
            len(facts.duplicates.within), *_listed(facts.duplicates.within)
        ),
        lambda params, facts: "0 groups of identical images within a split",
    ),
    Check(
        "drift",
        "dataset",
        _at_most("drift_kl_max", lambda params: params.drift_kl_max),
        lambda facts, params: Observation(facts.drift),
        lambda params, facts: (
            f"KL vs the last accepted data version <= {params.drift_kl_max} "
            "(class distribution, binned pixel mean and std)"
        ),
        figures=lambda facts: {"drift_kl_max": _drift_max(facts)},
    ),
)


def severity_keys(checks: tuple[Check, ...] = CHECKS) -> list[str]:
    """The checks that take their severity from `validate.severity` (all but the banded ones)."""
    return [check.name for check in checks if check.band is None]


def check_severities(params: ValidateParams, checks: tuple[Check, ...] = CHECKS) -> ValidateParams:
    """``params`` when `validate.severity` names exactly the declared checks, else ParamsError
    naming each unknown or missing `validate.severity.<name>` and the allowed names."""
    allowed = severity_keys(checks)
    names = ", ".join(allowed)
    problems = [
        f"params.yaml: validate.severity.{name} is not a known check; allowed: {names}"
        for name in sorted(set(params.severity) - set(allowed))
    ]
    problems += [
        f"params.yaml: validate.severity.{name} is missing; allowed: {names}"
        for name in allowed
        if name not in params.severity
    ]
    if problems:
        raise ParamsError("\n".join(problems))
    return params


def results(
    passed: Mapping[tuple[str, Level], bool],
    params: ValidateParams,
    facts: Facts,
    checks: tuple[Check, ...] = CHECKS,
) -> list[CheckResult]:
    """One report entry per declared check, in declaration order."""
    return [check.result(passed, params, facts) for check in checks]
