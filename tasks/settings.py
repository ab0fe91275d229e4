"""Every environment variable the product reads, in one settings object (12-factor style).

One code base serves a laptop and a team's servers: only these variables change. Library
variables that a library reads itself (PREFECT_API_URL, AWS_*, MLFLOW_TRACKING_USERNAME, ...)
are left to that library; the ones listed here are those our own code reads.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

TRAINING_MODES = ("in-process", "worker")
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


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
    # The team's shared servers (`make serve-team`, flows/team.py); secrets stay out of repr.
    s3_endpoint: str | None = None  # IMGFLOW_S3_ENDPOINT: a managed S3 (serve-team starts none)
    s3_bucket: str = "imgflow"  # IMGFLOW_S3_BUCKET: MLflow artifacts (mlflow/) and DVC (dvc/)
    s3_port: int = 8333  # IMGFLOW_S3_PORT: the local S3 store's port (serve-team)
    s3_access_key: str | None = field(default=None, repr=False)  # AWS_ACCESS_KEY_ID
    s3_secret_key: str | None = field(default=None, repr=False)  # AWS_SECRET_ACCESS_KEY
    postgres_url: str = field(default=DEFAULT_POSTGRES_URL, repr=False)  # IMGFLOW_POSTGRES_URL
    mlflow_db: str = "imgflow_mlflow"  # IMGFLOW_MLFLOW_DB: MLflow's tracking database
    mlflow_auth_db: str = "imgflow_mlflow_auth"  # IMGFLOW_MLFLOW_AUTH_DB: basic-auth's users
    prefect_db: str = "imgflow_prefect"  # IMGFLOW_PREFECT_DB: the Prefect server's database
    team_host: str = "127.0.0.1"  # IMGFLOW_TEAM_HOST: the address serve-team's servers bind to
    mlflow_port: int = 5000  # IMGFLOW_MLFLOW_PORT: the team MLflow server's port
    team_state_dir: Path = Path(".imgflow-team")  # IMGFLOW_TEAM_STATE: S3 data, auth config
    # IMGFLOW_MLFLOW_ADMIN_PASSWORD and IMGFLOW_PREFECT_AUTH_STRING: the servers' secrets
    mlflow_admin_password: str | None = field(default=None, repr=False)
    prefect_auth_string: str | None = field(default=None, repr=False)
    # What clients use to reach the shared servers (checked by `imgflow preflight`).
    mlflow_username: str | None = None  # MLFLOW_TRACKING_USERNAME
    mlflow_password: str | None = field(default=None, repr=False)  # MLFLOW_TRACKING_PASSWORD
    prefect_api_url: str | None = None  # PREFECT_API_URL: unset = Prefect's temporary server
    prefect_api_auth_string: str | None = field(default=None, repr=False)  # PREFECT_API_AUTH_STRING
    # Worker hand-off (docs/deploy.md): where a worker gets the code, keeps DVC's cache and
    # copies each epoch's checkpoint.
    git_url: str | None = (
        None  # IMGFLOW_GIT_URL: the repository a worker clones the run's commit from
    )
    dvc_cache_dir: Path | None = (
        None  # IMGFLOW_DVC_CACHE_DIR: a worker's DVC cache, kept across runs
    )
    checkpoint_url: str | None = None  # IMGFLOW_CHECKPOINT_URL: s3://bucket/prefix or file:///path
    # IMGFLOW_RESTORE_ONLY=1: `tasks.train` refuses to train (a scheduler restoring a worker's
    # training from DVC's run-cache must never train it again by accident).
    restore_only: bool = False

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
            s3_endpoint=env.get("IMGFLOW_S3_ENDPOINT") or None,
            s3_bucket=env.get("IMGFLOW_S3_BUCKET") or "imgflow",
            s3_port=_integer(env, "IMGFLOW_S3_PORT", 8333),
            s3_access_key=env.get("AWS_ACCESS_KEY_ID") or None,
            s3_secret_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            postgres_url=env.get("IMGFLOW_POSTGRES_URL") or DEFAULT_POSTGRES_URL,
            mlflow_db=env.get("IMGFLOW_MLFLOW_DB") or "imgflow_mlflow",
            mlflow_auth_db=env.get("IMGFLOW_MLFLOW_AUTH_DB") or "imgflow_mlflow_auth",
            prefect_db=env.get("IMGFLOW_PREFECT_DB") or "imgflow_prefect",
            team_host=env.get("IMGFLOW_TEAM_HOST") or "127.0.0.1",
            mlflow_port=_integer(env, "IMGFLOW_MLFLOW_PORT", 5000),
            team_state_dir=Path(env.get("IMGFLOW_TEAM_STATE") or ".imgflow-team"),
            mlflow_admin_password=env.get("IMGFLOW_MLFLOW_ADMIN_PASSWORD") or None,
            prefect_auth_string=env.get("IMGFLOW_PREFECT_AUTH_STRING") or None,
            mlflow_username=env.get("MLFLOW_TRACKING_USERNAME") or None,
            mlflow_password=env.get("MLFLOW_TRACKING_PASSWORD") or None,
            prefect_api_url=env.get("PREFECT_API_URL") or None,
            prefect_api_auth_string=env.get("PREFECT_API_AUTH_STRING") or None,
            git_url=env.get("IMGFLOW_GIT_URL") or None,
            dvc_cache_dir=Path(cache).expanduser()
            if (cache := env.get("IMGFLOW_DVC_CACHE_DIR"))
            else None,
            checkpoint_url=env.get("IMGFLOW_CHECKPOINT_URL") or None,
            restore_only=env.get("IMGFLOW_RESTORE_ONLY", "") not in ("", "0"),
        )
