"""The team's shared servers on one control host (`make serve-team`): an S3 store, the MLflow
server with basic-auth on PostgreSQL, the Prefect server on PostgreSQL, the `cpu` and `gpu`
work pools and the deployments. Worker hosts connect with the environment it prints.

    AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... IMGFLOW_MLFLOW_ADMIN_PASSWORD=... \\
    IMGFLOW_PREFECT_AUTH_STRING=... python -m flows.team [--check]
    python -m flows.team remote [--local-keys]    # the DVC remote `team` on that store

PostgreSQL must already run (IMGFLOW_POSTGRES_URL); a managed S3 replaces the local store when
IMGFLOW_S3_ENDPOINT is set. Ctrl-C or SIGTERM stops every process this command started.
See docs/deploy.md.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.serve import (
    PREFECT,
    free_ports,
    stack_environment,
    start_process,
    stop_processes,
    wait_until_answering,
)
from flows.team_config import (
    MLFLOW_DRIVER,
    WEED_PORT_FLAGS,
    TeamConfigError,
    check_settings,
    database_url,
    mlflow_server_command,
    mlflow_url,
    prefect_api_url,
    redacted,
    render_auth_ini,
    render_env_file,
    s3_client,
    s3_endpoint,
    weed_command,
    worker_environment,
)
from tasks.settings import Settings, SettingsError

STARTUP_SECONDS = 180.0
S3_STOP_SECONDS = 40.0  # `weed mini` took 5-30 s to shut down here


class PostgresUnreachableError(RuntimeError):
    """The team's PostgreSQL does not answer; nothing was started."""


class TeamStartError(RuntimeError):
    """A server of the team stack failed to start; the message names its log."""


def _databases(settings: Settings) -> tuple[str, ...]:
    return (settings.mlflow_db, settings.mlflow_auth_db, settings.prefect_db)


def ensure_databases(settings: Settings) -> list[str]:
    """Create the MLflow, basic-auth and Prefect databases when missing; returns those created."""
    import psycopg2
    from psycopg2 import sql

    for name in _databases(settings):
        database_url(settings.postgres_url, name)  # rejects a name that is not an identifier
    try:
        connection = psycopg2.connect(settings.postgres_url, connect_timeout=5)
    except psycopg2.OperationalError as error:
        raise PostgresUnreachableError(
            f"PostgreSQL at {redacted(settings.postgres_url)} is unreachable or refused the "
            f"connection ({_first_line(error)}): start PostgreSQL there, or set "
            "IMGFLOW_POSTGRES_URL to the team's server and user"
        ) from None
    created = []
    try:
        connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with connection.cursor() as cursor:
            for name in _databases(settings):
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cursor.fetchone() is None:
                    cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                    created.append(name)
    except psycopg2.Error as error:
        raise TeamStartError(
            f"cannot create the team's databases ({_first_line(error)}): grant CREATEDB to the "
            f"user of IMGFLOW_POSTGRES_URL or create {', '.join(_databases(settings))} yourself"
        ) from None
    finally:
        connection.close()
    return created


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def ensure_bucket(settings: Settings, timeout: float = 60.0) -> None:
    """Create the bucket unless it exists; retries while a just-started store warms up."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = s3_client(settings)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.head_bucket(Bucket=settings.s3_bucket)
            return
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
                try:
                    client.create_bucket(Bucket=settings.s3_bucket)
                    return
                except ClientError as create_error:
                    last: Exception = create_error
            else:
                last = error
        except BotoCoreError as error:
            last = error
        if time.monotonic() > deadline:
            raise TeamStartError(
                f"S3 bucket {settings.s3_bucket!r} at {s3_endpoint(settings)} is not usable "
                f"after {timeout:.0f} s ({last}): check the endpoint and the AWS_* keys"
            )
        time.sleep(1)


@dataclass
class TeamStack:
    """The running team servers; `stop()` ends every process this stack started."""

    settings: Settings
    log_dir: Path
    processes: list[subprocess.Popen] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # how long each piece took to start

    @contextmanager
    def timed(self, piece: str) -> Iterator[None]:
        start = time.monotonic()
        yield
        self.seconds[piece] = round(time.monotonic() - start, 1)

    @property
    def worker_environment(self) -> dict[str, str]:
        return worker_environment(self.settings)

    def start(self, name: str, command: list[str], environment: dict[str, str]) -> None:
        process = start_process(command, environment, self.log_dir / f"team-{name}.log")
        self.processes.append(process)

    def wait(self, name: str, url: str) -> None:
        """Wait for the server started last; a crash names its log."""
        log = self.log_dir / f"team-{name}.log"
        try:
            wait_until_answering(url, self.processes[-1], f"{name} server", STARTUP_SECONDS)
        except (RuntimeError, TimeoutError) as error:
            raise TeamStartError(f"{error} (log: {log}: {_last_line(log)})") from None

    def run(self, name: str, command: list[str], environment: dict[str, str]) -> None:
        """Run a one-off step (a schema upgrade), its output appended to the server's log."""
        log = self.log_dir / f"team-{name}.log"
        with log.open("ab") as handle:
            done = subprocess.run(
                command, env=environment, stdout=handle, stderr=subprocess.STDOUT, check=False
            )
        if done.returncode != 0:
            step = " ".join(command[2:5])
            raise TeamStartError(f"{step} failed (log: {log}: {_last_line(log)})")

    def stop(self) -> None:
        stop_processes(self.processes, timeout=S3_STOP_SECONDS)


def write_private(path: Path, text: str) -> Path:
    """Write a file only its owner can read (it holds secrets)."""
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)
    return path


def _flask_secret(state_dir: Path) -> str:
    """The basic-auth app's CSRF key: one random key kept in the state dir, so every server
    worker and every restart uses the same one."""
    path = state_dir / "mlflow-flask-secret"
    if not path.exists():
        write_private(path, secrets.token_hex(32))
    return path.read_text().strip()


def _last_line(log: Path) -> str:
    """The log's last non-empty line: usually the error that stopped the server."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else "empty"


def _base_environment() -> dict[str, str]:
    environment = dict(os.environ)
    # These would override the auth config file's admin (MLflow reads them first).
    environment.pop("MLFLOW_AUTH_ADMIN_USERNAME", None)
    environment.pop("MLFLOW_AUTH_ADMIN_PASSWORD", None)
    return environment


def start_s3(stack: TeamStack, state_dir: Path, ports: Mapping[str, int] | None) -> None:
    """`weed mini` with the team's keys (it accepts anonymous writes without them). Only its
    S3 port faces clients: its internal listeners take free ports unless `ports` names them,
    so they never collide with another service on the control host (8080, 9333, ...)."""
    settings = stack.settings
    ports = ports or dict(zip(WEED_PORT_FLAGS, free_ports(len(WEED_PORT_FLAGS)), strict=True))
    data_dir = state_dir / "s3"
    data_dir.mkdir(parents=True, exist_ok=True)
    environment = _base_environment()
    environment.update(
        AWS_ACCESS_KEY_ID=settings.s3_access_key or "",
        AWS_SECRET_ACCESS_KEY=settings.s3_secret_key or "",
    )
    stack.start("s3", weed_command(settings, data_dir, ports), environment)
    stack.wait("s3", f"{s3_endpoint(settings)}/")


def start_mlflow(stack: TeamStack, state_dir: Path, workers: int) -> None:
    """Upgrade both schemas, write the auth config (mode 600), start the tracking server."""
    settings = stack.settings
    auth_config = write_private(state_dir / "mlflow-auth.ini", render_auth_ini(settings))
    environment = _base_environment()
    if not environment.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):
        environment["MLFLOW_FLASK_SERVER_SECRET_KEY"] = _flask_secret(state_dir)
    environment.update(
        MLFLOW_AUTH_CONFIG_PATH=str(auth_config.resolve()),
        MLFLOW_S3_ENDPOINT_URL=s3_endpoint(settings),
        AWS_ACCESS_KEY_ID=settings.s3_access_key or "",
        AWS_SECRET_ACCESS_KEY=settings.s3_secret_key or "",
    )
    tracking_db = database_url(settings.postgres_url, settings.mlflow_db, MLFLOW_DRIVER)
    auth_db = database_url(settings.postgres_url, settings.mlflow_auth_db, MLFLOW_DRIVER)
    mlflow = [sys.executable, "-m", "mlflow"]
    stack.run("mlflow", [*mlflow, "db", "upgrade", tracking_db], environment)
    auth_cli = [sys.executable, "-m", "mlflow.server.auth", "db", "upgrade", "--url", auth_db]
    stack.run("mlflow", auth_cli, environment)
    stack.start("mlflow", mlflow_server_command(settings, workers), environment)
    stack.wait("mlflow", f"{mlflow_url(settings)}/health")


def start_prefect(stack: TeamStack, state_dir: Path) -> None:
    """Upgrade Prefect's schema on PostgreSQL and start its server with API auth."""
    settings = stack.settings
    api_url = prefect_api_url(settings)
    environment = stack_environment(state_dir / "prefect", api_url)
    environment.update(
        PREFECT_SERVER_DATABASE_CONNECTION_URL=database_url(
            settings.postgres_url, settings.prefect_db, driver="postgresql+asyncpg"
        ),
        PREFECT_SERVER_API_AUTH_STRING=settings.prefect_auth_string or "",
        PREFECT_API_AUTH_STRING=settings.prefect_auth_string or "",
    )
    stack.run("prefect", [*PREFECT, "server", "database", "upgrade", "-y"], environment)
    command = [*PREFECT, "server", "start", "--host", settings.team_host]
    stack.start("prefect", [*command, "--port", str(settings.prefect_port)], environment)
    stack.wait("prefect", f"{api_url}/health")


def apply_pools_and_deployments(settings: Settings) -> dict[str, str]:
    """Create the `cpu` and `gpu` pools and apply the deployments on the team's server."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from flows.deploy import apply_deployments

    local = "://" not in settings.source and not settings.source.startswith("git@")
    updates: dict[Any, Any] = {
        PREFECT_API_URL: prefect_api_url(settings),
        PREFECT_API_AUTH_STRING: settings.prefect_auth_string,
    }
    with temporary_settings(updates=updates):
        applied = apply_deployments(settings, source_is_local=local)
    return {name: str(deployment_id) for name, deployment_id in applied.items()}


@contextmanager
def team_stack(
    settings: Settings,
    log_dir: Path = Path("logs"),
    weed_ports: Mapping[str, int] | None = None,
    mlflow_workers: int = 2,
) -> Iterator[TeamStack]:
    """Check secrets and PostgreSQL (nothing starts if either fails), then start the servers;
    stops every process on exit, also when a later server fails to start."""
    check_settings(settings)
    ensure_databases(settings)
    state_dir = settings.team_state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = TeamStack(settings, log_dir)
    try:
        if settings.s3_endpoint is None:
            with stack.timed("s3"):
                start_s3(stack, state_dir, weed_ports)
        ensure_bucket(settings)
        with stack.timed("mlflow"):
            start_mlflow(stack, state_dir, mlflow_workers)
        with stack.timed("prefect"):
            start_prefect(stack, state_dir)
        with stack.timed("deployments"):
            apply_pools_and_deployments(settings)
        write_private(state_dir / "worker.env", render_env_file(stack.worker_environment))
        yield stack
    finally:
        stack.stop()


def configure_dvc_remote(repo: Path, settings: Settings, local_keys: bool = False) -> None:
    """Make `team` (s3://<bucket>/dvc on the team's store) the default DVC remote. The keys go
    to the untracked .dvc/config.local with `local_keys`, else they stay in the environment."""
    dvc = [sys.executable, "-m", "dvc", "remote"]
    url = f"s3://{settings.s3_bucket}/dvc"
    steps = [
        [*dvc, "add", "--default", "--force", "team", url],
        [*dvc, "modify", "team", "endpointurl", s3_endpoint(settings)],
    ]
    if local_keys:
        steps.append([*dvc, "modify", "--local", "team", "access_key_id", _key(settings, 0)])
        steps.append([*dvc, "modify", "--local", "team", "secret_access_key", _key(settings, 1)])
    for step in steps:
        subprocess.run(step, cwd=repo, check=True, capture_output=True)


def _key(settings: Settings, index: int) -> str:
    key = (settings.s3_access_key, settings.s3_secret_key)[index]
    if not key:
        raise TeamConfigError("--local-keys needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    return key


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m flows.team", description=__doc__.split("\n")[0]
    )
    parser.add_argument("command", nargs="?", choices=("serve", "remote"), default="serve")
    parser.add_argument("--check", action="store_true", help="smoke-check the servers once up")
    parser.add_argument(
        "--local-keys", action="store_true", help="remote: keys into .dvc/config.local"
    )
    return parser.parse_args(argv)


def _announce(stack: TeamStack) -> None:
    settings = stack.settings
    print(f"MLflow:    {mlflow_url(settings)}  (basic-auth; user admin)")
    print(
        f"Prefect:   {prefect_api_url(settings)}  (pools {settings.cpu_pool}, {settings.gpu_pool})"
    )
    print(f"S3:        {s3_endpoint(settings)}  bucket {settings.s3_bucket}")
    environment_file = settings.team_state_dir / "worker.env"
    print(f"Worker hosts export (secrets in {environment_file}, mode 600):")
    print(render_env_file(stack.worker_environment, mask=True), end="")
    print("DVC remote: `python -m flows.team remote` in the checkout, then commit .dvc/config.")
    started = ", ".join(f"{piece} {seconds} s" for piece, seconds in stack.seconds.items())
    print(f"Started in: {started}. Logs in {stack.log_dir}/team-*.log. Ctrl-C stops everything.")


def _serve(settings: Settings, check: bool) -> int:
    from flows.team_check import run_checks

    with team_stack(settings) as stack:
        _announce(stack)
        if check:
            for line in run_checks(settings, stack.worker_environment):
                print(f"check passed: {line}")
        try:
            while all(process.poll() is None for process in stack.processes):
                time.sleep(1)
        except KeyboardInterrupt:
            return 0
        print("a team server exited: see logs/team-*.log; stopping the others", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    from flows.team_check import TeamCheckError

    arguments = _arguments(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # the addresses show at once under nohup
    # `kill`/systemd stop the supervisor with SIGTERM: unwind so every server stops too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Ctrl-C must stop the servers even when a script started us with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        settings = Settings.from_environment(Path("."))
        if arguments.command == "remote":
            configure_dvc_remote(Path("."), settings, arguments.local_keys)
            print(f"DVC remote 'team': s3://{settings.s3_bucket}/dvc at {s3_endpoint(settings)}")
            return 0
        return _serve(settings, arguments.check)
    except (SettingsError, TeamConfigError, PostgresUnreachableError, TeamStartError) as error:
        print(f"serve-team: {error}", file=sys.stderr)
    except TeamCheckError as error:
        print(f"serve-team check failed: {error}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
