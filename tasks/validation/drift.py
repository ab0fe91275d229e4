"""The accepted-data summary (class counts, binned pixel mean/std) and drift against it.

When a data version passes validation its summary is written to artifacts/accepted_data.json;
the next run compares its own summary with it (smoothed KL per histogram).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.atomic import write_json
from tasks.profile import EXCLUDED
from tasks.validation.report import ValidationError, jsonable
from tasks.validation.stats import smoothed_kl

if TYPE_CHECKING:
    import pandas as pd

HIST_BINS = 32
NO_BASELINE = "no accepted data version yet"  # the drift figure before the first accepted run


def summarise(
    profile: pd.DataFrame, class_names: Sequence[str], pixel_range: tuple[float, float]
) -> dict[str, Any]:
    """Summary of a data version for later drift checks: class counts, pixel histograms."""
    usable = profile[profile["split"] != EXCLUDED]
    counts = np.bincount(usable["label"].to_numpy(np.int64), minlength=len(class_names))
    low, high = float(pixel_range[0]), float(pixel_range[1])
    mean_hist, _ = np.histogram(usable["pixel_mean"], bins=HIST_BINS, range=(low, high))
    std_hist, _ = np.histogram(
        usable["pixel_std"], bins=HIST_BINS, range=(0.0, max((high - low) / 2, 1e-9))
    )
    return {
        "class_names": list(class_names),
        "class_counts": counts.tolist(),
        "images": len(usable),
        "pixel_range": [low, high],
        "pixel_mean_hist": mean_hist.tolist(),
        "pixel_std_hist": std_hist.tolist(),
    }


def drift_figures(current: Mapping[str, Any], accepted: Mapping[str, Any]) -> dict[str, float]:
    """KL of the current summary against the accepted one (pixel mean, pixel std, classes);
    the class KL is infinite when the class names differ."""
    drift = {
        "pixel_mean_kl": smoothed_kl(current["pixel_mean_hist"], accepted["pixel_mean_hist"]),
        "pixel_std_kl": smoothed_kl(current["pixel_std_hist"], accepted["pixel_std_hist"]),
    }
    if list(accepted.get("class_names", [])) == list(current["class_names"]):
        drift["class_kl"] = smoothed_kl(current["class_counts"], accepted["class_counts"])
    else:
        drift["class_kl"] = math.inf
    return drift


def load_accepted(path: Path) -> dict[str, Any] | None:
    """The last accepted data version's summary, or None before the first accepted run."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValidationError(f"{path} is not valid JSON ({error}); delete it to reset") from None
    return data if isinstance(data, dict) else None


def write_accepted(path: Path, summary: Mapping[str, Any]) -> Path:
    """Record a summary as the accepted data version (deterministic JSON, atomic)."""
    return write_json(path, jsonable(dict(summary)), allow_nan=False)
