"""The team's shared servers (flows/team.py): the rendered config without any server, the
refusals that happen before anything starts, and (marked topology, needs PostgreSQL on
127.0.0.1:5432) the whole stack on free ports with its own databases: MLflow basic-auth,
artifacts in the S3 bucket, Prefect API auth and pools, the DVC remote."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.serve import free_port, free_ports
from flows.team import TeamStack, configure_dvc_remote, team_stack
from flows.team_check import (
    artifact_keys,
    basic,
    basic_token,
    check_prefect,
    http_status,
    log_smoke_run,
    run_checks,
)
from flows.team_config import (
    MLFLOW_DEFAULT_PASSWORD,
    WEED_PORT_FLAGS,
    TeamConfigError,
    check_settings,
    database_url,
    mlflow_server_command,
    private_team_environment,
    render_auth_ini,
    render_env_file,
    s3_client,
    weed_command,
    worker_environment,
)
from tasks.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "AWS_ACCESS_KEY_ID": "team-key",
    "AWS_SECRET_ACCESS_KEY": "team-secret-%-value",
    "IMGFLOW_MLFLOW_ADMIN_PASSWORD": "s3cret-%-admin",
    "IMGFLOW_PREFECT_AUTH_STRING": "prefect:token-value",
}


def team_settings(tmp_path: Path, **overrides: str) -> Settings:
    return Settings.from_environment(
        REPO_ROOT, environment={**SECRETS, "IMGFLOW_TEAM_STATE": str(tmp_path), **overrides}
    )


# --- configuration, no server -------------------------------------------------------------


def test_auth_config_reads_back_as_written(tmp_path: Path) -> None:
    # MLflow's read_auth_config uses a plain configparser.ConfigParser (with interpolation);
    # importing mlflow.server here would cost the fast suite ~10 s. The topology tests show
    # the real server accepting this password.
    settings = team_settings(tmp_path, IMGFLOW_MLFLOW_AUTH_DB="team_auth")
    config = configparser.ConfigParser()
    config.read_string(render_auth_ini(settings))
    section = config["mlflow"]
    assert section["admin_username"] == "admin"
    assert section["admin_password"] == "s3cret-%-admin"  # the % survives interpolation
    assert section["database_uri"] == "postgresql+psycopg2://postgres@127.0.0.1:5432/team_auth"
    assert section["default_permission"] == "READ"
    assert section["authorization_function"].endswith(":authenticate_request_basic_auth")


def test_worker_environment_points_at_the_servers_and_masks_secrets(tmp_path: Path) -> None:
    settings = team_settings(
        tmp_path,
        IMGFLOW_TEAM_HOST="10.1.2.3",
        IMGFLOW_POSTGRES_URL="postgresql://imgflow:pgpass@db.internal:5432/postgres",
        IMGFLOW_SOURCE="https://git.example/imgflow.git",
        IMGFLOW_S3_ENDPOINT="https://s3.example.com",
    )
    check_settings(settings)  # exposed servers are fine with a managed S3
    environment = worker_environment(settings)
    assert environment["PREFECT_API_URL"] == "http://10.1.2.3:4200/api"
    assert environment["MLFLOW_TRACKING_URI"] == "http://10.1.2.3:5000"
    assert environment["MLFLOW_S3_ENDPOINT_URL"] == "https://s3.example.com"
    assert environment["MLFLOW_TRACKING_USERNAME"] == "admin"
    assert environment["MLFLOW_TRACKING_PASSWORD"] == "s3cret-%-admin"
    assert environment["PREFECT_API_AUTH_STRING"] == "prefect:token-value"
    assert environment["IMGFLOW_SOURCE"] == "https://git.example/imgflow.git"
    assert environment["IMGFLOW_LOCK_URL"].endswith("@db.internal:5432/imgflow_mlflow")
    masked = render_env_file(environment, mask=True)
    for secret in ("s3cret", "team-secret", "token-value", "pgpass"):
        assert secret not in masked
    assert "export AWS_ACCESS_KEY_ID=team-key" in masked
    assert "export MLFLOW_TRACKING_PASSWORD=s3cret-%-admin\n" in render_env_file(environment)


def test_server_bound_beyond_loopback_names_its_allowed_hosts(tmp_path: Path) -> None:
    loopback = mlflow_server_command(team_settings(tmp_path))
    assert "--allowed-hosts" not in loopback
    assert loopback[loopback.index("--host") + 1] == "127.0.0.1"
    exposed = mlflow_server_command(team_settings(tmp_path, IMGFLOW_TEAM_HOST="10.1.2.3"))
    assert exposed[exposed.index("--allowed-hosts") + 1].startswith("10.1.2.3,10.1.2.3:*")
    assert exposed[exposed.index("--artifacts-destination") + 1] == "s3://imgflow/mlflow"


def test_local_s3_store_listens_on_loopback_only(tmp_path: Path) -> None:
    command = weed_command(team_settings(tmp_path), tmp_path / "s3", {"filer.port": 1234})
    assert "-ip=127.0.0.1" in command and "-ip.bind=127.0.0.1" in command
    assert "-s3.port=8333" in command and "-filer.port=1234" in command


def test_database_names_and_urls_are_checked(tmp_path: Path) -> None:
    url = "postgresql://u:p@h:5432/postgres?sslmode=require"
    assert database_url(url, "a_b", "postgresql+asyncpg") == (
        "postgresql+asyncpg://u:p@h:5432/a_b?sslmode=require"
    )
    with pytest.raises(TeamConfigError, match="not a plain lower-case identifier"):
        database_url(url, "x; DROP DATABASE y")
    with pytest.raises(TeamConfigError, match="IMGFLOW_POSTGRES_URL must look like"):
        database_url("mysql://h/db", "a")


@pytest.mark.parametrize(
    ("removed", "changed", "message"),
    [
        ("AWS_SECRET_ACCESS_KEY", {}, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must both"),
        ("IMGFLOW_MLFLOW_ADMIN_PASSWORD", {}, "IMGFLOW_MLFLOW_ADMIN_PASSWORD must be set"),
        (
            None,
            {"IMGFLOW_MLFLOW_ADMIN_PASSWORD": MLFLOW_DEFAULT_PASSWORD},
            "public default 'password1234'",
        ),
        ("IMGFLOW_PREFECT_AUTH_STRING", {}, "IMGFLOW_PREFECT_AUTH_STRING must be set"),
        (None, {"IMGFLOW_MLFLOW_ADMIN_PASSWORD": "short"}, "at least 12 characters"),
        (None, {"IMGFLOW_TEAM_HOST": "0.0.0.0"}, "would expose the local S3 store"),
    ],
)
def test_missing_or_default_secrets_are_refused(
    removed: str | None, changed: dict[str, str], message: str
) -> None:
    environment = {**SECRETS, **changed}
    environment.pop(removed or "", None)
    with pytest.raises(TeamConfigError, match=message):
        check_settings(Settings.from_environment(REPO_ROOT, environment=environment))


def run_team_command(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMGFLOW_"))}
    return subprocess.run(
        [sys.executable, "-m", "flows.team"],
        cwd=REPO_ROOT,
        env={**base, **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_unreachable_postgres_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    state = tmp_path / "state"
    done = run_team_command(
        {**SECRETS, "IMGFLOW_POSTGRES_URL": url, "IMGFLOW_TEAM_STATE": str(state)}
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"serve-team: PostgreSQL at {url} is unreachable or refused")
    assert "set IMGFLOW_POSTGRES_URL" in done.stderr
    assert not state.exists()  # nothing started: no S3 data, no auth config


def test_default_mlflow_password_is_refused_by_the_command(tmp_path: Path) -> None:
    state = tmp_path / "state"
    environment = {**SECRETS, "IMGFLOW_MLFLOW_ADMIN_PASSWORD": MLFLOW_DEFAULT_PASSWORD}
    done = run_team_command({**environment, "IMGFLOW_TEAM_STATE": str(state)})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "public default 'password1234'" in done.stderr
    assert not state.exists()


# --- the whole stack (PostgreSQL, weed mini, mlflow server, prefect server) ----------------


@pytest.fixture(scope="module")
def team(
    tmp_path_factory: pytest.TempPathFactory, team_databases: list[str]
) -> Iterator[TeamStack]:
    """The whole team stack on free ports, with its own databases; all removed afterwards."""
    root = tmp_path_factory.mktemp("team")
    environment = {
        **SECRETS,
        **private_team_environment(root / "state", "imgflow-test", team_databases),
    }
    settings = Settings.from_environment(REPO_ROOT, environment=environment)
    ports = dict(zip(WEED_PORT_FLAGS, free_ports(len(WEED_PORT_FLAGS)), strict=True))
    try:
        with team_stack(settings, root / "logs", weed_ports=ports, mlflow_workers=1) as stack:
            yield stack
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.topology
def test_mlflow_rejects_a_wrong_password_and_accepts_the_admin(team: TeamStack) -> None:
    settings = team.settings
    url = f"http://127.0.0.1:{settings.mlflow_port}/api/2.0/mlflow/experiments/search"
    url += "?max_results=1"
    password = settings.mlflow_admin_password or ""
    assert http_status(url) == 401
    assert http_status(url, basic("admin", "wrong-password")) == 401
    assert http_status(url, basic("admin", MLFLOW_DEFAULT_PASSWORD)) == 401
    assert http_status(url, basic("admin", password)) == 200


@pytest.mark.topology
def test_an_artifact_logged_through_mlflow_is_an_object_in_the_bucket(team: TeamStack) -> None:
    run_id = log_smoke_run(team.worker_environment)
    keys = artifact_keys(team.settings, run_id)
    assert [key for key in keys if key.endswith(f"{run_id}/artifacts/smoke/check.txt")]
    body = s3_client(team.settings).get_object(Bucket="imgflow-test", Key=keys[0])["Body"]
    assert body.read() == b"team smoke check"


@pytest.mark.topology
def test_s3_store_refuses_wrong_keys(team: TeamStack) -> None:
    from botocore.exceptions import ClientError

    wrong = Settings.from_environment(
        REPO_ROOT,
        environment={
            "AWS_ACCESS_KEY_ID": "team-key",
            "AWS_SECRET_ACCESS_KEY": "not-the-secret",
            "IMGFLOW_S3_PORT": str(team.settings.s3_port),
        },
    )
    with pytest.raises(ClientError):
        s3_client(wrong).put_object(Bucket="imgflow-test", Key="intruder.txt", Body=b"x")


@pytest.mark.topology
def test_prefect_requires_the_auth_string_and_has_both_pools(team: TeamStack) -> None:
    settings = team.settings
    url = f"http://127.0.0.1:{settings.prefect_port}/api/work_pools/filter"
    assert http_status(url, body=b"{}") == 401
    assert http_status(url, basic_token("wrong"), body=b"{}") == 401
    assert http_status(url, basic_token(settings.prefect_auth_string or ""), body=b"{}") == 200
    check_prefect(settings)  # pools cpu and gpu
    request = urllib.request.Request(
        f"http://127.0.0.1:{settings.prefect_port}/api/deployments/name/retrain/retrain"
    )
    request.add_header("Authorization", basic_token(settings.prefect_auth_string or ""))
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


@pytest.mark.topology
def test_the_check_command_passes_on_the_running_stack(team: TeamStack) -> None:
    lines = run_checks(team.settings, team.worker_environment)
    assert len(lines) == 3 and "s3://imgflow-test/mlflow/" in lines[1]


@pytest.mark.topology
def test_dvc_remote_keeps_keys_out_of_tracked_config(team: TeamStack, tmp_path: Path) -> None:
    repo = tmp_path / "checkout"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=repo, check=True)
    configure_dvc_remote(repo, team.settings, local_keys=True)
    tracked = (repo / ".dvc" / "config").read_text()
    assert "s3://imgflow-test/dvc" in tracked
    assert f"endpointurl = http://127.0.0.1:{team.settings.s3_port}" in tracked
    assert "team-secret" not in tracked and "team-key" not in tracked
    assert "team-secret" in (repo / ".dvc" / "config.local").read_text()
    ignored = subprocess.run(["git", "check-ignore", ".dvc/config.local"], cwd=repo, check=False)
    assert ignored.returncode == 0  # DVC's own .dvc/.gitignore keeps it out of git
    (repo / "sample.txt").write_text("a tracked file\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    for command in (["add", "sample.txt"], ["push"]):
        subprocess.run(
            [sys.executable, "-m", "dvc", *command], cwd=repo, env=env, check=True, timeout=120
        )
    pushed = s3_client(team.settings).list_objects_v2(Bucket="imgflow-test", Prefix="dvc/")
    assert pushed.get("KeyCount", 0) == 1


@pytest.mark.topology
def test_a_user_without_createdb_gets_one_line_saying_what_to_grant(
    tmp_path: Path, postgres: str
) -> None:
    import psycopg2

    role = f"imgflow_r{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(postgres)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE ROLE "{role}" LOGIN NOCREATEDB')
        url = f"postgresql://{role}@127.0.0.1:5432/postgres"
        name = f"{role}_never"
        state = tmp_path / "state"
        done = run_team_command(
            {
                **SECRETS,
                "IMGFLOW_POSTGRES_URL": url,
                "IMGFLOW_MLFLOW_DB": name,
                "IMGFLOW_TEAM_STATE": str(state),
            }
        )
        assert done.returncode == 2
        assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
        assert "cannot create the team's databases (permission denied" in done.stderr
        assert "grant CREATEDB" in done.stderr and not state.exists()
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{role}_never"')
            cursor.execute(f'DROP ROLE IF EXISTS "{role}"')
        admin.close()
