"""`imgflow worker`: a GPU (or CPU) host joins a work pool with its environment only.

It needs PREFECT_API_URL (+ PREFECT_API_AUTH_STRING), IMGFLOW_GIT_URL (the deployment's pull
step clones each run's commit from it), S3 credentials and, for a store that is not AWS,
IMGFLOW_S3_ENDPOINT; MLflow's variables when training logs there. It checks those services
answer (the same preflight as a run), then becomes `prefect worker start` on the pool.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tasks.preflight import format_results, preflight, raise_if_failed
from tasks.settings import Settings

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "imgflow" / "dvc"
QUERY_SECONDS = "2"  # how often the worker asks for runs (Prefect's default 10 s adds latency)


class WorkerConfigError(ValueError):
    """The worker's environment lacks something it needs; the message says what to export."""


def check_worker_environment(settings: Settings) -> None:
    missing = []
    if not settings.prefect_api_url:
        missing.append("PREFECT_API_URL (the team's Prefect API, e.g. http://host:4200/api)")
    if not settings.git_url:
        missing.append("IMGFLOW_GIT_URL (the repository workers clone each run's commit from)")
    if not (settings.s3_access_key and settings.s3_secret_key):
        missing.append("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the DVC remote's store)")
    if missing:
        raise WorkerConfigError("imgflow worker: export " + "; ".join(missing))


def worker_command(pool: str, limit: int) -> list[str]:
    return [
        *(sys.executable, "-m", "prefect", "worker", "start"),
        *("--pool", pool, "--type", "process", "--limit", str(limit)),
    ]


def start_worker(pool: str | None, limit: int | None) -> None:
    """Check the environment and the services, then replace this process by the worker."""
    settings = Settings.from_environment(Path.cwd())
    check_worker_environment(settings)
    results = preflight(settings, Path.cwd())
    print(format_results(results), flush=True)
    raise_if_failed(results)
    os.environ.setdefault("IMGFLOW_DVC_CACHE_DIR", str(DEFAULT_CACHE_DIR))
    os.environ.setdefault("PREFECT_WORKER_QUERY_SECONDS", QUERY_SECONDS)
    command = worker_command(pool or settings.gpu_pool, limit or settings.gpu_slots)
    os.execv(command[0], command)
