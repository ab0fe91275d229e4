"""What the team's shared servers need, computed without starting anything.

`flows.team` starts the servers from these values; keeping them pure lets the fast test suite
check the rendered auth config, the worker environment and the commands without PostgreSQL.
"""

from __future__ import annotations

import re
import shlex
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flows.serve import free_ports
from tasks.settings import Settings

MLFLOW_ADMIN = "admin"
MLFLOW_DEFAULT_PASSWORD = "password1234"  # MLflow's historical default: never accept it
MLFLOW_MIN_PASSWORD = 12  # basic-auth refuses to create an admin with a shorter password
LOOPBACK = ("127.0.0.1", "localhost", "::1")
ANY_ADDRESS = ("0.0.0.0", "::", "")
SECRET_VARIABLES = (
    "PREFECT_API_AUTH_STRING",
    "MLFLOW_TRACKING_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
)
# SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not installed: name psycopg2.
MLFLOW_DRIVER = "postgresql+psycopg2"
_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# `weed mini` listens on many ports; tests pass free ones for each of these flags.
WEED_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
    "debug.port",
    "metricsPort",
    "s3.metricsPort",
    "s3.debug.port",
    "s3.port.iceberg",
    "s3.port.lance",
)


class TeamConfigError(ValueError):
    """A setting of the team deployment is missing or unsafe; the message says how to fix it."""


def check_settings(settings: Settings) -> None:
    """Refuse to start with a missing secret, MLflow's well-known default password, or the
    local S3 store exposed beyond this host."""
    problems = []
    if settings.s3_endpoint is None and not is_loopback(settings):
        problems.append(
            f"IMGFLOW_TEAM_HOST={settings.team_host} would expose the local S3 store's filer and "
            "master without authentication (weed mini binds them all to one address): set "
            "IMGFLOW_S3_ENDPOINT to a managed S3, or to a store you run behind a firewall"
        )
    if not (settings.s3_access_key and settings.s3_secret_key):
        problems.append(
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must both be set (the S3 store "
            "accepts anonymous writes when started without keys)"
        )
    password = settings.mlflow_admin_password
    if not password:
        problems.append("IMGFLOW_MLFLOW_ADMIN_PASSWORD must be set (MLflow's admin password)")
    elif password == MLFLOW_DEFAULT_PASSWORD:
        problems.append(
            f"IMGFLOW_MLFLOW_ADMIN_PASSWORD is MLflow's public default {MLFLOW_DEFAULT_PASSWORD!r}:"
            " choose another"
        )
    elif len(password) < MLFLOW_MIN_PASSWORD or "\n" in password:
        problems.append(
            f"IMGFLOW_MLFLOW_ADMIN_PASSWORD must be one line of at least {MLFLOW_MIN_PASSWORD} "
            "characters (MLflow refuses shorter admin passwords)"
        )
    if not settings.prefect_auth_string:
        problems.append("IMGFLOW_PREFECT_AUTH_STRING must be set (the Prefect API's credential)")
    if problems:
        raise TeamConfigError("serve-team refused to start: " + "; ".join(problems))


def database_url(postgres_url: str, database: str, driver: str = "postgresql") -> str:
    """The URL of `database` on the server of `postgres_url`, with another driver if asked."""
    if not _DATABASE_NAME.match(database):
        raise TeamConfigError(
            f"database name {database!r} is not a plain lower-case identifier: "
            "set IMGFLOW_MLFLOW_DB / IMGFLOW_MLFLOW_AUTH_DB / IMGFLOW_PREFECT_DB to one"
        )
    parts = urlsplit(postgres_url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise TeamConfigError(
            f"IMGFLOW_POSTGRES_URL must look like postgresql://user@host:5432/postgres, "
            f"got scheme {parts.scheme!r}"
        )
    return urlunsplit((driver, parts.netloc, f"/{database}", parts.query, ""))


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def public_host(settings: Settings) -> str:
    """The name clients use for this host: the bind address unless it is a wildcard."""
    return socket.getfqdn() if settings.team_host in ANY_ADDRESS else settings.team_host


def is_loopback(settings: Settings) -> bool:
    return settings.team_host in LOOPBACK


def s3_endpoint(settings: Settings) -> str:
    """A managed S3's endpoint (IMGFLOW_S3_ENDPOINT) or the local store's."""
    return settings.s3_endpoint or f"http://{public_host(settings)}:{settings.s3_port}"


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client for the team's store (local or managed); it connects lazily."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint(settings),
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key,
    )


def mlflow_url(settings: Settings) -> str:
    return f"http://{public_host(settings)}:{settings.mlflow_port}"


def prefect_api_url(settings: Settings) -> str:
    return f"http://{public_host(settings)}:{settings.prefect_port}/api"


def render_auth_ini(settings: Settings) -> str:
    """MLflow basic-auth's config file: its own database, our admin password."""
    password = settings.mlflow_admin_password or ""
    auth_db = database_url(settings.postgres_url, settings.mlflow_auth_db, MLFLOW_DRIVER)
    # MLflow reads the file with configparser's interpolation: a literal % is written %%.
    return (
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {auth_db.replace('%', '%%')}\n"
        f"admin_username = {MLFLOW_ADMIN}\n"
        f"admin_password = {password.replace('%', '%%')}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )


def worker_environment(settings: Settings) -> dict[str, str]:
    """What a worker or scheduling host exports to use the team's servers."""
    return {
        "PREFECT_API_URL": prefect_api_url(settings),
        "PREFECT_API_AUTH_STRING": settings.prefect_auth_string or "",
        "MLFLOW_TRACKING_URI": mlflow_url(settings),
        "MLFLOW_TRACKING_USERNAME": MLFLOW_ADMIN,
        "MLFLOW_TRACKING_PASSWORD": settings.mlflow_admin_password or "",
        "AWS_ACCESS_KEY_ID": settings.s3_access_key or "",
        "AWS_SECRET_ACCESS_KEY": settings.s3_secret_key or "",
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint(settings),
        "IMGFLOW_TRAINING_MODE": "worker",
        "IMGFLOW_LOCK_URL": database_url(settings.postgres_url, settings.mlflow_db),
        "IMGFLOW_SOURCE": settings.source,
        # The worker hand-off (docs/deploy.md): code, store address, checkpoint copies.
        "IMGFLOW_GIT_URL": settings.git_url or settings.source,
        "IMGFLOW_S3_ENDPOINT": s3_endpoint(settings),
        "IMGFLOW_S3_BUCKET": settings.s3_bucket,
        "IMGFLOW_CHECKPOINT_URL": f"s3://{settings.s3_bucket}/checkpoints",
    }


def render_env_file(environment: Mapping[str, str], mask: bool = False) -> str:
    """`export NAME=value` lines (shell-quoted); secrets replaced by *** when `mask`."""
    lines = []
    for name, value in environment.items():
        shown = value
        if mask and name in SECRET_VARIABLES and value:
            shown = "***"
        elif mask and "://" in value:
            shown = redacted(value)
        lines.append(f"export {name}={shlex.quote(shown)}")
    return "\n".join(lines) + "\n"


def weed_command(
    settings: Settings,
    state_dir: Path,
    ports: Mapping[str, int] | None = None,
    host: str = "127.0.0.1",
) -> list[str]:
    """`weed mini` serving S3 on the loopback address (see check_settings); `ports` moves its
    other listeners. Another `host` is for a private link only (a test's network namespace):
    weed mini's filer and master listen there too, without authentication."""
    weed = str(Path(sys.executable).parent / "weed")
    command = [weed, "mini", f"-dir={state_dir}", f"-ip={host}", f"-ip.bind={host}"]
    command.append(f"-s3.port={settings.s3_port}")
    command += [f"-{flag}={port}" for flag, port in (ports or {}).items()]
    return command


def mlflow_server_command(settings: Settings, workers: int = 2) -> list[str]:
    """The MLflow tracking server with basic-auth, PostgreSQL store and proxied S3 artifacts."""
    command = [
        *(sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth"),
        *(
            "--backend-store-uri",
            database_url(settings.postgres_url, settings.mlflow_db, MLFLOW_DRIVER),
        ),
        *("--artifacts-destination", f"s3://{settings.s3_bucket}/mlflow"),
        *("--host", settings.team_host, "--port", str(settings.mlflow_port)),
        *("--workers", str(workers)),
    ]
    if not is_loopback(settings):
        host = public_host(settings)
        command += ["--allowed-hosts", f"{host},{host}:*,localhost,localhost:*,127.0.0.1:*"]
    return command


def private_team_environment(
    state_dir: Path,
    bucket: str,
    databases: Sequence[str],
    host: str = "127.0.0.1",
    ports: Sequence[int] | None = None,
) -> dict[str, str]:
    """IMGFLOW_* variables for a team stack of one's own (tests, benchmarks): its own state
    folder, bucket and databases (MLflow, MLflow auth, Prefect) and free ports for S3, MLflow
    and Prefect, so it never meets a team's running servers. Secrets are the caller's."""
    s3_port, mlflow_port, prefect_port = ports or free_ports(3)
    mlflow_db, auth_db, prefect_db = databases
    return {
        "IMGFLOW_TEAM_HOST": host,
        "IMGFLOW_TEAM_STATE": str(state_dir),
        "IMGFLOW_S3_BUCKET": bucket,
        "IMGFLOW_S3_PORT": str(s3_port),
        "IMGFLOW_MLFLOW_PORT": str(mlflow_port),
        "IMGFLOW_PREFECT_PORT": str(prefect_port),
        "IMGFLOW_MLFLOW_DB": mlflow_db,
        "IMGFLOW_MLFLOW_AUTH_DB": auth_db,
        "IMGFLOW_PREFECT_DB": prefect_db,
    }
