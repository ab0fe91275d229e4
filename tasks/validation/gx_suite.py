"""Great Expectations plumbing: one ephemeral context, one suite per table built from the check
declarations, the run, and the Data Docs site. Nothing here knows a particular check.

GX is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.params import ValidateParams
from tasks.validation.checks import CHECKS, TABLES, Check, Level, Table
from tasks.validation.facts import Facts
from tasks.validation.report import MAX_LISTED

if TYPE_CHECKING:
    import pandas as pd

# GX's pandas engine cannot compare inf; undefined figures are recorded as this finite value.
INFINITE_FIGURE = 1e300


def quiet_gx() -> None:
    """Silence GX progress bars, analytics and renderer log noise (stage logs stay readable)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    # GX 1.24's HTML renderer logs a traceback at ERROR level for some failed expectations
    # (a missing 'unexpected_percent'); the page is still written, so keep that noise out.
    logging.getLogger("great_expectations.render").setLevel(logging.CRITICAL)


def gx_context(data_docs_dir: Path | None) -> Any:
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


def build_expectations(
    table: Table, params: ValidateParams, facts: Facts, checks: Iterable[Check] = CHECKS
) -> list[Any]:
    """The GX expectations of every check on ``table``, tagged with meta {check, level}."""
    import great_expectations as gx

    expectations = []
    for check in checks:
        if check.table != table:
            continue
        for expect in check.expectations(params, facts):
            meta = {"check": check.name}
            if expect.level:
                meta["level"] = expect.level
            kind = getattr(gx.expectations, expect.kind)
            expectations.append(kind(**expect.kwargs, meta=meta))
    return expectations


def figure_frame(facts: Facts, checks: Iterable[Check] = CHECKS) -> pd.DataFrame:
    """The one-row dataset table: every check's figures as columns."""
    import pandas as pd

    figures: dict[str, float] = {}
    for check in checks:
        if check.figures is not None:
            figures.update(check.figures(facts))
    return pd.DataFrame(
        {key: [INFINITE_FIGURE if v == math.inf else float(v)] for key, v in figures.items()}
    )


def table_frame(table: Table, facts: Facts, checks: Iterable[Check] = CHECKS) -> pd.DataFrame:
    """The frame a table's suite validates: images (per file), classes, dataset (figures)."""
    if table == "images":
        return facts.images
    if table == "classes":
        return facts.classes
    return figure_frame(facts, checks)


def run_suite(
    context: Any, name: str, expectations: list[Any], frame: pd.DataFrame
) -> dict[tuple[str, Level], bool]:
    """Validate ``frame``; (check, level) -> whether all its expectations passed."""
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
    passed: dict[tuple[str, Level], bool] = {}
    for result in outcome.results:  # GX reorders results: group them by their meta
        meta = result.expectation_config.meta or {}
        key = (meta.get("check", "unknown"), meta.get("level") or None)
        passed[key] = passed.get(key, True) and bool(result.success)
    return passed


def run_checks(
    params: ValidateParams,
    facts: Facts,
    data_docs_dir: Path | None = None,
    checks: Iterable[Check] = CHECKS,
) -> Mapping[tuple[str, Level], bool]:
    """Run one suite per table over the facts, build Data Docs when asked, return outcomes."""
    quiet_gx()
    checks = tuple(checks)
    context = gx_context(data_docs_dir)
    passed: dict[tuple[str, Level], bool] = {}
    for table in TABLES:
        expectations = build_expectations(table, params, facts, checks)
        passed |= run_suite(context, table, expectations, table_frame(table, facts, checks))
    if data_docs_dir is not None:
        Path(data_docs_dir).mkdir(parents=True, exist_ok=True)
        context.build_data_docs()
    return passed
