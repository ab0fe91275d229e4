"""Smoke checks of a running team stack (`python -m flows.team --check`): MLflow refuses a
request without credentials and accepts the admin's, a logged artifact lands in the S3 bucket,
and the Prefect API refuses a request without its auth string and has both work pools."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping

from flows.team_config import MLFLOW_ADMIN, mlflow_url, prefect_api_url, s3_client
from tasks.settings import Settings


class TeamCheckError(RuntimeError):
    """A running team server does not behave as deployed; the message says which and how."""


def http_status(url: str, authorization: str | None = None, body: bytes | None = None) -> int:
    """The HTTP status of GET (or POST with `body`) `url`, with an Authorization header."""
    request = urllib.request.Request(url, data=body, method="POST" if body else "GET")
    if authorization:
        request.add_header("Authorization", authorization)
    if body:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def check_mlflow_auth(settings: Settings) -> None:
    """No credentials and a wrong password are 401; the admin's are accepted."""
    url = f"{mlflow_url(settings)}/api/2.0/mlflow/experiments/search?max_results=1"
    password = settings.mlflow_admin_password or ""
    statuses = {
        "no credentials": http_status(url),
        "a wrong password": http_status(url, basic(MLFLOW_ADMIN, password + "-wrong")),
        "the admin's credentials": http_status(url, basic(MLFLOW_ADMIN, password)),
    }
    expected = {"no credentials": 401, "a wrong password": 401, "the admin's credentials": 200}
    if statuses != expected:
        raise TeamCheckError(f"MLflow basic-auth answered {statuses}, expected {expected}")


_LOG_RUN = """
import mlflow
mlflow.set_experiment("{experiment}")
with mlflow.start_run() as run:
    mlflow.log_text("team smoke check", "smoke/check.txt")
print(run.info.run_id)
"""


def log_smoke_run(environment: Mapping[str, str]) -> str:
    """Log a run with one artifact through the server, as a worker would; returns its id."""
    experiment = f"imgflow-team-check-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(
        [sys.executable, "-c", _LOG_RUN.format(experiment=experiment)],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise TeamCheckError(f"logging a run through MLflow failed: {tail[0]}")
    return done.stdout.strip().splitlines()[-1]


def artifact_keys(settings: Settings, run_id: str) -> list[str]:
    """The bucket's object keys under mlflow/ that belong to `run_id`."""
    client = s3_client(settings)
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=settings.s3_bucket, Prefix="mlflow/"
    )
    return [
        item["Key"] for page in pages for item in page.get("Contents", []) if run_id in item["Key"]
    ]


def check_artifact_store(settings: Settings, environment: Mapping[str, str]) -> str:
    """A run's artifact logged through the server is an object in the bucket; returns its key."""
    run_id = log_smoke_run(environment)
    keys = [key for key in artifact_keys(settings, run_id) if key.endswith("smoke/check.txt")]
    if not keys:
        raise TeamCheckError(
            f"run {run_id}'s artifact is not in s3://{settings.s3_bucket}/mlflow/: check the "
            "MLflow server's --artifacts-destination and MLFLOW_S3_ENDPOINT_URL (its log)"
        )
    return keys[0]


def check_prefect(settings: Settings) -> None:
    """The API refuses requests without the auth string; the cpu and gpu pools exist."""
    url = f"{prefect_api_url(settings)}/work_pools/filter"
    without = http_status(url, body=b"{}")
    if without != 401:
        raise TeamCheckError(f"Prefect API answered {without} without credentials, not 401")
    request = urllib.request.Request(url, data=b"{}", method="POST")
    request.add_header("Authorization", basic_token(settings.prefect_auth_string or ""))
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        pools = {pool["name"] for pool in json.load(response)}
    missing = {settings.cpu_pool, settings.gpu_pool} - pools
    if missing:
        raise TeamCheckError(f"Prefect work pools {sorted(missing)} are missing (have {pools})")


def basic_token(auth_string: str) -> str:
    """Prefect's client header for PREFECT_API_AUTH_STRING."""
    return "Basic " + base64.b64encode(auth_string.encode()).decode()


def run_checks(settings: Settings, environment: Mapping[str, str]) -> list[str]:
    """Every smoke check; returns one line per passed check, raises on the first failure."""
    check_mlflow_auth(settings)
    key = check_artifact_store(settings, environment)
    check_prefect(settings)
    return [
        "MLflow: 401 without credentials or with a wrong password, 200 for the admin",
        f"MLflow artifacts: a run's artifact is s3://{settings.s3_bucket}/{key}",
        "Prefect: 401 without the auth string; pools "
        f"{settings.cpu_pool!r} and {settings.gpu_pool!r} exist",
    ]
