"""The per-check validation table, shared by the validation summary and the run report."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

VALIDATION_TABLE_HEADER = ["check", "severity", "status", "observed", "threshold"]
MAX_OBSERVED_CHARS = 120


def validation_rows(checks: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    """One row per check of metrics/validation.json, in VALIDATION_TABLE_HEADER's order.

    A failed check is "FAILED" when its severity is error (it stopped the run), else "warning".
    """
    rows = []
    for check in checks:
        severity = check.get("severity", "error")
        failed = "FAILED" if severity == "error" else "warning"
        status = "ok" if check.get("success") else failed
        observed = json.dumps(check.get("observed"), sort_keys=True)
        if len(observed) > MAX_OBSERVED_CHARS:
            observed = observed[: MAX_OBSERVED_CHARS - 3] + "..."
        cells = [check.get("name"), severity, status, observed, check.get("expected")]
        rows.append([str(cell) for cell in cells])
    return rows
