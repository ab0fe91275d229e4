"""Every environment variable the product reads, in one settings object (12-factor style).

One code base serves a laptop and a team's servers: only these variables change. Library
variables that a library reads itself (PREFECT_API_URL, AWS_*, MLFLOW_TRACKING_USERNAME, ...)
are left to that library; the ones listed here are those our own code reads.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TRAINING_MODES = ("in-process", "worker")
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


class SettingsError(ValueError):
    """An environment variable holds a value the product cannot use; the message names it."""


def _integer(environment: Mapping[str, str], name: str, default: int) -> int:
    text = environment.get(name) or str(default)
    try:
        value = int(text)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {text!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    tracking_uri: str  # MLFLOW_TRACKING_URI: the MLflow store or server
    user: str  # IMGFLOW_USER: recorded on rollbacks (defaults to the login name)
    retrain_cron: str  # IMGFLOW_RETRAIN_CRON: when the `retrain` deployment fires (UTC)
    landing_dir: Path | None  # IMGFLOW_LANDING_DIR: new labelled images, one folder per class
    webhook_url: str | None  # IMGFLOW_WEBHOOK_URL: success/failure notifications are POSTed here
    training_mode: str  # IMGFLOW_TRAINING_MODE: "in-process" or "worker" (the gpu pool)
    gpu_pool: str  # IMGFLOW_GPU_POOL
    cpu_pool: str  # IMGFLOW_CPU_POOL
    gpu_slots: int  # IMGFLOW_GPU_SLOTS: trainings one gpu worker runs at once
    training_timeout_seconds: int  # IMGFLOW_TRAINING_TIMEOUT
    source: str  # IMGFLOW_SOURCE: where deployed flows' code lives (this checkout or a git URL)
    prefect_home: Path  # PREFECT_HOME: the local Prefect server's state (`make serve`)
    prefect_port: int  # IMGFLOW_PREFECT_PORT: the local Prefect server's port (`make serve`)
    lock_url: str | None  # IMGFLOW_LOCK_URL: PostgreSQL for locks across hosts (else flock)
    lock_timeout_seconds: int  # IMGFLOW_LOCK_TIMEOUT: longest wait for a model's lock

    @classmethod
    def from_environment(
        cls, repo: Path = Path("."), environment: Mapping[str, str] | None = None
    ) -> Settings:
        """Read the settings; raises SettingsError naming a variable with an unusable value."""
        env = os.environ if environment is None else environment
        mode = env.get("IMGFLOW_TRAINING_MODE") or "in-process"
        if mode not in TRAINING_MODES:
            raise SettingsError(
                f"IMGFLOW_TRAINING_MODE must be one of {', '.join(TRAINING_MODES)}, got {mode!r}"
            )
        landing = env.get("IMGFLOW_LANDING_DIR")
        return cls(
            tracking_uri=env.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI,
            user=env.get("IMGFLOW_USER") or getpass.getuser(),
            retrain_cron=env.get("IMGFLOW_RETRAIN_CRON") or "0 2 * * *",
            landing_dir=Path(landing) if landing else None,
            webhook_url=env.get("IMGFLOW_WEBHOOK_URL") or None,
            training_mode=mode,
            gpu_pool=env.get("IMGFLOW_GPU_POOL") or "gpu",
            cpu_pool=env.get("IMGFLOW_CPU_POOL") or "cpu",
            gpu_slots=_integer(env, "IMGFLOW_GPU_SLOTS", 1),
            training_timeout_seconds=_integer(env, "IMGFLOW_TRAINING_TIMEOUT", 3600),
            source=env.get("IMGFLOW_SOURCE") or str(repo.resolve()),
            prefect_home=Path(env.get("PREFECT_HOME") or Path.home() / ".prefect"),
            prefect_port=_integer(env, "IMGFLOW_PREFECT_PORT", 4200),
            lock_url=env.get("IMGFLOW_LOCK_URL") or None,
            lock_timeout_seconds=_integer(env, "IMGFLOW_LOCK_TIMEOUT", 600),
        )
