"""Operations settings for scheduled runs, read from the environment (12-factor style), so one
code base serves a laptop and a cluster: only these variables change."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TRAINING_MODES = ("in-process", "worker")


@dataclass(frozen=True)
class OpsSettings:
    retrain_cron: str  # when the `retrain` deployment fires (UTC)
    landing_dir: Path | None  # new labelled images arrive here, one sub-folder per class
    webhook_url: str | None  # success/failure notifications are POSTed here
    training_mode: str  # "in-process" or "worker" (dispatch `train-model` runs to the gpu pool)
    gpu_pool: str
    cpu_pool: str
    training_timeout_seconds: int
    source: str  # where the deployed flows' code lives: this checkout, or a git URL

    @classmethod
    def from_environment(cls, repo: Path = Path(".")) -> OpsSettings:
        landing = os.environ.get("IMGFLOW_LANDING_DIR")
        mode = os.environ.get("IMGFLOW_TRAINING_MODE", "in-process")
        if mode not in TRAINING_MODES:
            raise ValueError(f"IMGFLOW_TRAINING_MODE must be one of {TRAINING_MODES}, got {mode!r}")
        return cls(
            retrain_cron=os.environ.get("IMGFLOW_RETRAIN_CRON", "0 2 * * *"),
            landing_dir=Path(landing) if landing else None,
            webhook_url=os.environ.get("IMGFLOW_WEBHOOK_URL") or None,
            training_mode=mode,
            gpu_pool=os.environ.get("IMGFLOW_GPU_POOL", "gpu"),
            cpu_pool=os.environ.get("IMGFLOW_CPU_POOL", "cpu"),
            training_timeout_seconds=int(os.environ.get("IMGFLOW_TRAINING_TIMEOUT", "3600")),
            source=os.environ.get("IMGFLOW_SOURCE", str(repo.resolve())),
        )
