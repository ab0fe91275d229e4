"""Preflight: before any training, check that every configured shared service answers and
accepts our credentials, and say which one does not and how to fix it.

One function per check, each returning a `CheckResult`; `preflight(settings, repo)` runs the
checks for what is configured (the embedded default, sqlite MLflow with no PREFECT_API_URL and
no DVC remote, has nothing to check) and `raise_if_failed` turns failures into one
`PreflightError` listing every failing service, one line each.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from tasks.settings import Settings

# A server that does not accept a connection within CONNECT_SECONDS is unreachable; one that
# accepts but takes longer than TIMEOUT_SECONDS to answer (a busy server's first
# authenticated request hashes the password: seconds on 2 cores) is "not answering".
CONNECT_SECONDS = 5.0
TIMEOUT_SECONDS = 30.0
MLFLOW_PROBE = "/api/2.0/mlflow/experiments/search?max_results=1"
# S3 error codes that mean "these credentials are wrong" (a GET names them; a HEAD only says 403).
S3_CREDENTIAL_CODES = {"SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken"}
S3_MISSING_CODES = {"404", "NoSuchBucket"}


class PreflightError(ValueError):
    """A configured shared service is unreachable or rejects our credentials."""


@dataclass(frozen=True)
class CheckResult:
    name: str  # which service, e.g. "MLflow (http://host:5000)"
    ok: bool
    message: str  # what was found, and on failure how to fix it


@dataclass(frozen=True)
class S3Target:
    """An S3 bucket and how to reach it; None fields are left to boto3's own lookup."""

    bucket: str
    endpoint: str | None = None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    region: str | None = None


def _http_failure(service: str, url: str, error: httpx.HTTPError, fix: str) -> str:
    """Unreachable (no connection) vs connected but no answer in time vs anything else."""
    reason = type(error).__name__ if not str(error) else f"{type(error).__name__}: {error}"
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
        return f"{service} at {url} is unreachable ({reason}): {fix}"
    if isinstance(error, httpx.TimeoutException):
        return (
            f"{service} at {url} accepted the connection but did not answer in time "
            f"({reason}): it is overloaded or still starting; check its logs and retry"
        )
    return f"{service} at {url} failed ({reason}): {fix}"


def _timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=min(seconds, CONNECT_SECONDS))


def check_mlflow(
    uri: str, username: str | None, password: str | None, timeout: float = TIMEOUT_SECONDS
) -> CheckResult:
    """An authenticated experiments search, with Basic auth as MLflow's client sends it."""
    name = f"MLflow ({uri})"
    auth = httpx.BasicAuth(username, password or "") if username else None
    try:
        response = httpx.get(uri.rstrip("/") + MLFLOW_PROBE, auth=auth, timeout=_timeout(timeout))
    except httpx.HTTPError as error:
        fix = "start it (`make serve-team`) or fix MLFLOW_TRACKING_URI"
        return CheckResult(name, False, _http_failure("MLflow", uri, error, fix))
    if response.status_code == 200:
        return CheckResult(name, True, f"answered as user {username or '(anonymous)'}")
    if response.status_code == 401 and not username:
        fix = "it requires a login: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
    elif response.status_code == 401:
        fix = f"MLflow rejected user {username}: check MLFLOW_TRACKING_PASSWORD"
    elif response.status_code == 403 and "Host header" in response.text:
        host = urlsplit(uri).hostname
        fix = f"the server refuses the host name {host}: start it with --allowed-hosts {host}"
    elif response.status_code == 403:
        fix = f"user {username} may not read experiments: grant READ to it on the server"
    else:
        fix = f"HTTP {response.status_code}: is MLFLOW_TRACKING_URI an MLflow server?"
    return CheckResult(name, False, f"MLflow at {uri}: {fix}")


def prefect_headers(auth_string: str | None) -> dict[str, str]:
    """The Authorization header Prefect's client sends for PREFECT_API_AUTH_STRING."""
    if not auth_string:
        return {}
    import base64

    return {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()}


def check_prefect(
    api_url: str, auth_string: str | None, timeout: float = TIMEOUT_SECONDS
) -> CheckResult:
    """GET /health (open to all), then an authenticated POST /work_pools/filter."""
    name = f"Prefect API ({api_url})"
    api = api_url.rstrip("/")
    try:
        health = httpx.get(f"{api}/health", timeout=_timeout(timeout))
        response = httpx.post(
            f"{api}/work_pools/filter",
            json={"limit": 1},
            headers=prefect_headers(auth_string),
            timeout=_timeout(timeout),
        )
    except httpx.HTTPError as error:
        fix = "start the server (`make serve-team`) or fix PREFECT_API_URL"
        return CheckResult(name, False, _http_failure("Prefect API", api_url, error, fix))
    if health.status_code == 200 and response.status_code == 200:
        return CheckResult(name, True, "healthy, auth string accepted")
    if response.status_code == 401 and not auth_string:
        fix = "it requires an auth string: set PREFECT_API_AUTH_STRING"
    elif response.status_code == 401:
        fix = "rejected PREFECT_API_AUTH_STRING: it must equal the server's auth string"
    else:
        fix = (
            f"/health answered HTTP {health.status_code}, /work_pools/filter HTTP "
            f"{response.status_code}: is PREFECT_API_URL a Prefect API (it ends in /api)?"
        )
    return CheckResult(name, False, f"Prefect API at {api_url}: {fix}")


def _s3_client(target: S3Target, timeout: float) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=target.endpoint,
        aws_access_key_id=target.access_key,
        aws_secret_access_key=target.secret_key,
        region_name=target.region or "us-east-1",
        config=Config(
            connect_timeout=min(timeout, CONNECT_SECONDS),
            read_timeout=timeout,
            retries={"max_attempts": 1},
        ),
    )


def _s3_error_code(client: Any, bucket: str, code: str) -> str:
    """A HEAD answers only "403"; a listing names the reason (bad secret, unknown key, denied)."""
    from botocore.exceptions import BotoCoreError, ClientError

    if code != "403":
        return code
    try:
        client.list_objects_v2(Bucket=bucket, MaxKeys=1)
    except ClientError as error:
        return str(error.response.get("Error", {}).get("Code", code))
    except BotoCoreError:
        return code
    return code


def _s3_failure(label: str, where: str, target: S3Target, code: str) -> str:
    if code in S3_CREDENTIAL_CODES:
        return (
            f"{label} at {where} rejected the credentials ({code}): check "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or the remote's --local keys)"
        )
    if code in S3_MISSING_CODES:
        return (
            f"{label}: bucket {target.bucket!r} does not exist at {where}: create it "
            "(`make serve-team` creates it) or fix the bucket name"
        )
    if code in ("403", "AccessDenied"):
        return f"{label}: access to bucket {target.bucket!r} denied at {where}: grant it"
    return f"{label}: bucket {target.bucket!r} at {where} answered {code}"


def check_s3(target: S3Target, label: str = "S3", timeout: float = TIMEOUT_SECONDS) -> CheckResult:
    """boto3 head_bucket; tells wrong credentials from a missing bucket from no endpoint."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    where = target.endpoint or "AWS S3"
    name = f"{label} (s3://{target.bucket} at {where})"
    client = _s3_client(target, timeout)
    try:
        client.head_bucket(Bucket=target.bucket)
    except NoCredentialsError:
        fix = "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        return CheckResult(name, False, f"{label}: {fix}")
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", "?"))
        code = _s3_error_code(client, target.bucket, code)
        return CheckResult(name, False, _s3_failure(label, where, target, code))
    except BotoCoreError as error:
        return CheckResult(name, False, _s3_unreachable(label, where, error))
    return CheckResult(name, True, "bucket reachable with these credentials")


def _s3_unreachable(label: str, where: str, error: Exception) -> str:
    from botocore.exceptions import ReadTimeoutError

    if isinstance(error, ReadTimeoutError):
        return (
            f"{label} endpoint {where} accepted the connection but did not answer in time: "
            "it is overloaded or still starting; check its logs and retry"
        )
    return (
        f"{label} endpoint {where} is unreachable ({type(error).__name__}): start the "
        "store (`make serve-team`) or fix the endpoint URL"
    )


def _dvc_config(repo: Path) -> Any:
    from dvc.config import Config

    return Config(dvc_dir=str(repo / ".dvc"))


def default_remote(repo: Path) -> tuple[str, dict[str, Any]] | None:
    """The DVC default remote's name and merged config (repo, local, global, system), or None."""
    config = _dvc_config(repo)
    name = config["core"].get("remote")
    if not name:
        return None
    return name, dict(config["remote"].get(name, {}))


def _remote_target(config: dict[str, Any], settings: Settings | None) -> S3Target:
    parts = urlsplit(str(config["url"]))
    return S3Target(
        bucket=parts.netloc,
        endpoint=config.get("endpointurl"),
        access_key=config.get("access_key_id") or (settings.s3_access_key if settings else None),
        secret_key=config.get("secret_access_key")
        or (settings.s3_secret_key if settings else None),
        region=config.get("region"),
    )


def check_dvc_remote(repo: Path, settings: Settings | None = None) -> CheckResult | None:
    """The default DVC remote answers (None: there is no default remote). An S3 remote is
    checked like any bucket; another kind through DVC's own filesystem for it."""
    found = default_remote(repo)
    if found is None:
        return None
    name, config = found
    url = str(config.get("url", ""))
    if url.startswith("s3://"):
        return check_s3(_remote_target(config, settings), label=f"DVC remote {name!r}")
    from dvc.fs import get_cloud_fs

    label = f"DVC remote {name!r} ({url})"
    try:
        cls, fs_config, path = get_cloud_fs(_dvc_config(repo), name=name)
        exists = cls(**fs_config).exists(path)
    except Exception as error:  # any filesystem's own error: its message is what helps
        return CheckResult(label, False, f"{label} is unreachable: {error}: fix `dvc remote`")
    if not exists:
        return CheckResult(label, False, f"{label} does not exist: create it or fix its url")
    return CheckResult(label, True, "reachable")


def check_commit(expected_commit: str, repo: Path) -> CheckResult:
    """A worker's checkout must be the commit the run was scheduled at (a full or >= 7-char
    abbreviated hash), or it would train other code than the run records."""
    name = "worker checkout"
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return CheckResult(
            name, False, f"{repo} is not a git checkout ({done.stderr.strip()}): clone the repo"
        )
    actual = done.stdout.strip()
    expected = expected_commit.strip().lower()
    if len(expected) >= 7 and actual.startswith(expected):
        return CheckResult(name, True, f"at {actual}")
    return CheckResult(
        name,
        False,
        f"worker checkout at {actual}, run scheduled at {expected_commit}: the deployment's "
        f"pull step must check out {expected_commit}",
    )


def preflight(settings: Settings, repo: Path) -> list[CheckResult]:
    """Check every shared service that is configured; nothing is checked for the embedded
    default (sqlite MLflow, no PREFECT_API_URL, no IMGFLOW_S3_ENDPOINT, no DVC remote)."""
    results: list[CheckResult] = []
    if urlsplit(settings.tracking_uri).scheme in ("http", "https"):
        results.append(
            check_mlflow(settings.tracking_uri, settings.mlflow_username, settings.mlflow_password)
        )
    if settings.prefect_api_url:
        results.append(check_prefect(settings.prefect_api_url, settings.prefect_api_auth_string))
    if settings.s3_endpoint:
        target = S3Target(
            bucket=settings.s3_bucket,
            endpoint=settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
        )
        results.append(check_s3(target, label="S3 store"))
    remote = check_dvc_remote(repo, settings)
    if remote is not None:
        results.append(remote)
    return results


def raise_if_failed(results: list[CheckResult]) -> None:
    """Raise PreflightError listing every failed check, one line each."""
    failed = [result for result in results if not result.ok]
    if failed:
        lines = "\n".join(f"- {result.message}" for result in failed)
        raise PreflightError(
            f"preflight: {len(failed)} of {len(results)} shared services not usable, "
            f"nothing was run:\n{lines}"
        )


def format_results(results: list[CheckResult]) -> str:
    """One line per check: `ok` or `FAILED`, the service, and what was found."""
    if not results:
        return "nothing to check: embedded setup (sqlite MLflow, local Prefect, no DVC remote)"
    return "\n".join(
        f"ok     {result.name}: {result.message}" if result.ok else f"FAILED {result.message}"
        for result in results
    )
