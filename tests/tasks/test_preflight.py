"""Preflight checks against real services: a SeaweedFS S3 store (`weed mini`), a real MLflow
server with basic auth (slow), and small HTTP endpoints that require the exact Authorization
header MLflow's and Prefect's own clients send (fast)."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flows.serve import free_ports
from tasks.preflight import (
    CheckResult,
    PreflightError,
    S3Target,
    check_commit,
    check_dvc_remote,
    check_mlflow,
    check_prefect,
    check_s3,
    format_results,
    prefect_headers,
    preflight,
    raise_if_failed,
)
from tasks.settings import Settings

WEED = Path(sys.executable).parent / "weed"
S3_KEY, S3_SECRET, BUCKET = "preflight-key", "preflight-secret", "preflight-bucket"
# Every port `weed mini` opens: all chosen free, so parallel tests and servers never collide.
WEED_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
    "debug.port",
    "s3.debug.port",
    "metricsPort",
    "s3.metricsPort",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def closed_url(path: str = "") -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    return f"http://127.0.0.1:{free_port()}{path}"


def stop(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group, SIGKILL it after `grace` seconds."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def init_repo(repo: Path) -> Path:
    """A git checkout with a DVC config and no remote."""
    (repo / ".dvc").mkdir(parents=True)
    (repo / ".dvc" / "config").write_text("[core]\n    analytics = false\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    return repo


def add_remote(repo: Path, *lines: str, local: tuple[str, ...] = ()) -> None:
    """Make `store` the default DVC remote (secrets in config.local, as `--local` puts them)."""
    remote = "".join(f"    {line}\n" for line in lines)
    (repo / ".dvc" / "config").write_text(
        f"[core]\n    analytics = false\n    remote = store\n['remote \"store\"']\n{remote}"
    )
    if local:
        text = "['remote \"store\"']\n" + "".join(f"    {line}\n" for line in local)
        (repo / ".dvc" / "config.local").write_text(text)


# --- S3: a real SeaweedFS store ------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`weed mini` with keys on free ports, holding one bucket; stopped after the module."""
    import boto3  # type: ignore[import-untyped]

    state = tmp_path_factory.mktemp("weed")
    ports = dict(zip(WEED_PORT_FLAGS, free_ports(len(WEED_PORT_FLAGS)), strict=True))
    command = [str(WEED), "mini", f"-dir={state}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
    command += [f"-{flag}={port}" for flag, port in ports.items()]
    environment = dict(os.environ, AWS_ACCESS_KEY_ID=S3_KEY, AWS_SECRET_ACCESS_KEY=S3_SECRET)
    with (state / "weed.log").open("wb") as log:
        process = subprocess.Popen(
            command, env=environment, stdout=log, stderr=log, start_new_session=True
        )
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(
                        f"weed mini did not start; see {state / 'weed.log'}"
                    ) from None
                time.sleep(0.3)
        yield endpoint
    finally:
        stop(process, grace=5)


def target(endpoint: str, **changes: str) -> S3Target:
    values = {"bucket": BUCKET, "access_key": S3_KEY, "secret_key": S3_SECRET} | changes
    return S3Target(endpoint=endpoint, **values)


def test_s3_bucket_reachable_with_the_right_keys(s3_endpoint: str) -> None:
    result = check_s3(target(s3_endpoint))
    assert result.ok, result.message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"secret_key": "wrong"}, "rejected the credentials (SignatureDoesNotMatch): check AWS_"),
        ({"access_key": "nobody"}, "rejected the credentials (InvalidAccessKeyId): check AWS_"),
        ({"bucket": "no-such-bucket"}, "bucket 'no-such-bucket' does not exist at http://"),
    ],
)
def test_s3_wrong_secret_unknown_key_and_missing_bucket_are_told_apart(
    s3_endpoint: str, changes: dict[str, str], expected: str
) -> None:
    result = check_s3(target(s3_endpoint, **changes), label="S3 store")
    assert not result.ok
    assert expected in result.message and result.message.startswith("S3 store")


def test_s3_endpoint_that_does_not_answer_is_unreachable() -> None:
    endpoint = closed_url()
    started = time.monotonic()
    result = check_s3(target(endpoint))
    assert not result.ok and time.monotonic() - started < 15
    assert f"S3 endpoint {endpoint} is unreachable" in result.message
    assert "`make serve-team`" in result.message


def test_preflight_checks_the_configured_s3_store(s3_endpoint: str, tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    environment = {
        "IMGFLOW_S3_ENDPOINT": s3_endpoint,
        "IMGFLOW_S3_BUCKET": BUCKET,
        "AWS_ACCESS_KEY_ID": S3_KEY,
        "AWS_SECRET_ACCESS_KEY": "wrong",
    }
    results = preflight(Settings.from_environment(repo, environment), repo)
    assert [(r.name.split(" ")[0], r.ok) for r in results] == [("S3", False)]
    assert "SignatureDoesNotMatch" in results[0].message


# --- DVC remote ----------------------------------------------------------------------------


def test_dvc_s3_remote_uses_its_endpoint_and_local_keys(s3_endpoint: str, tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    add_remote(
        repo,
        f"url = s3://{BUCKET}/dvc",
        f"endpointurl = {s3_endpoint}",
        local=(f"access_key_id = {S3_KEY}", f"secret_access_key = {S3_SECRET}"),
    )
    result = check_dvc_remote(repo)
    assert result is not None and result.ok, result
    assert result.name.startswith("DVC remote 'store'")

    (repo / ".dvc" / "config.local").write_text(
        f"['remote \"store\"']\n    access_key_id = {S3_KEY}\n    secret_access_key = bad\n"
    )
    result = check_dvc_remote(repo)
    assert result is not None and not result.ok
    assert "DVC remote 'store' at http://" in result.message
    assert "rejected the credentials (SignatureDoesNotMatch)" in result.message


def test_dvc_s3_remote_falls_back_to_the_environment_keys(s3_endpoint: str, tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    add_remote(repo, "url = s3://missing-bucket/dvc", f"endpointurl = {s3_endpoint}")
    environment = {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
    result = check_dvc_remote(repo, Settings.from_environment(repo, environment))
    assert result is not None and not result.ok
    assert "bucket 'missing-bucket' does not exist" in result.message


def test_dvc_local_remote_exists_or_is_named_missing(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    store = tmp_path / "store"
    add_remote(repo, f"url = {store}")
    missing = check_dvc_remote(repo)
    assert missing is not None and not missing.ok
    assert f"DVC remote 'store' ({store}) does not exist" in missing.message
    store.mkdir()
    present = check_dvc_remote(repo)
    assert present is not None and present.ok


# --- MLflow and Prefect: endpoints that require the clients' exact header ------------------


@dataclass
class AuthEndpoint:
    """An HTTP server on 127.0.0.1 answering 200 only to `expected` Authorization (GET /health
    is open, as Prefect's is); records every request's path and Authorization header."""

    expected: str
    url: str = ""
    seen: list[tuple[str, str | None]] = field(default_factory=list)
    reject_host: bool = False  # answer 403 like MLflow's host check


@pytest.fixture
def auth_endpoint() -> Iterator[AuthEndpoint]:
    endpoint = AuthEndpoint(expected="Basic " + base64.b64encode(b"alice:right").decode())

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            header = self.headers.get("Authorization")
            endpoint.seen.append((self.path, header))
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if endpoint.reject_host:
                status, body = 403, b"Invalid Host header - possible DNS rebinding attack detected"
            elif self.path.endswith("/health") or header == endpoint.expected:
                status, body = 200, b"[]" if "work_pools" in self.path else b"{}"
            else:
                status, body = 401, b"You are not authenticated."
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self.answer()

        def do_POST(self) -> None:
            self.answer()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()


def test_mlflow_check_sends_the_header_mlflows_client_sends(auth_endpoint: AuthEndpoint) -> None:
    from mlflow.utils.rest_utils import MlflowHostCreds, http_request

    creds = MlflowHostCreds(auth_endpoint.url, username="alice", password="right")
    http_request(creds, "/api/2.0/mlflow/experiments/search", "GET", max_retries=0)
    assert check_mlflow(auth_endpoint.url, "alice", "right").ok
    (_, mlflow_header), (_, our_header) = auth_endpoint.seen
    assert our_header == mlflow_header == auth_endpoint.expected


@pytest.mark.parametrize(
    ("username", "password", "expected"),
    [
        ("alice", "wrong", "MLflow rejected user alice: check MLFLOW_TRACKING_PASSWORD"),
        (
            None,
            None,
            "it requires a login: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD",
        ),
    ],
)
def test_mlflow_rejection_names_the_user_and_the_fix(
    auth_endpoint: AuthEndpoint, username: str | None, password: str | None, expected: str
) -> None:
    result = check_mlflow(auth_endpoint.url, username, password)
    assert not result.ok
    assert result.message == f"MLflow at {auth_endpoint.url}: {expected}"


def test_mlflow_host_check_names_allowed_hosts(auth_endpoint: AuthEndpoint) -> None:
    auth_endpoint.reject_host = True
    result = check_mlflow(auth_endpoint.url, "alice", "right")
    assert not result.ok and "--allowed-hosts 127.0.0.1" in result.message


def test_mlflow_unreachable_names_the_url_and_the_fix() -> None:
    url = closed_url()
    started = time.monotonic()
    result = check_mlflow(url, "alice", "right")
    assert not result.ok and time.monotonic() - started < 5
    assert result.message.startswith(f"MLflow at {url} is unreachable (ConnectError")
    assert result.message.endswith("start it (`make serve-team`) or fix MLFLOW_TRACKING_URI")


def test_a_server_that_accepts_but_never_answers_is_told_from_an_unreachable_one() -> None:
    with socket.socket() as silent:  # the kernel accepts connections; nobody ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        result = check_mlflow(url, "alice", "right", timeout=0.5)
    assert not result.ok
    assert result.message.startswith(f"MLflow at {url} accepted the connection but did not")


def test_prefect_check_sends_the_header_prefects_client_sends(
    auth_endpoint: AuthEndpoint,
) -> None:
    from prefect.client.orchestration import SyncPrefectClient

    auth_endpoint.expected = prefect_headers("admin:pass")["Authorization"]
    api = auth_endpoint.url + "/api"
    with SyncPrefectClient(api, auth_string="admin:pass") as client:
        client.hello()
    assert check_prefect(api, "admin:pass").ok
    prefect_header = auth_endpoint.seen[0][1]
    ours = dict(auth_endpoint.seen)["/api/work_pools/filter"]
    assert ours == prefect_header == "Basic " + base64.b64encode(b"admin:pass").decode()


@pytest.mark.parametrize(
    ("auth_string", "expected"),
    [
        ("admin:wrong", "rejected PREFECT_API_AUTH_STRING: it must equal the server's"),
        (None, "it requires an auth string: set PREFECT_API_AUTH_STRING"),
    ],
)
def test_prefect_rejection_says_how_to_fix_it(
    auth_endpoint: AuthEndpoint, auth_string: str | None, expected: str
) -> None:
    api = auth_endpoint.url + "/api"
    result = check_prefect(api, auth_string)
    assert not result.ok and result.message.startswith(f"Prefect API at {api}: {expected}")


def test_prefect_unreachable_names_the_url_and_the_fix() -> None:
    api = closed_url("/api")
    result = check_prefect(api, "admin:pass")
    assert not result.ok
    assert result.message.startswith(f"Prefect API at {api} is unreachable (ConnectError")
    assert "fix PREFECT_API_URL" in result.message


# --- MLflow: a real server with basic auth (slow: ~50 s to start on this machine) ----------


@pytest.fixture(scope="module")
def mlflow_basic_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server --app-name basic-auth` on sqlite, admin password `right-Pass-1`."""
    pytest.importorskip("flask_wtf", reason="MLflow's basic-auth app needs mlflow[auth]")
    state = tmp_path_factory.mktemp("mlflow-auth")
    (state / "auth.ini").write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{state / 'auth.db'}\n"
        "admin_username = admin\nadmin_password = right-Pass-1\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    port = free_port()
    environment = dict(
        os.environ,
        MLFLOW_AUTH_CONFIG_PATH=str(state / "auth.ini"),
        MLFLOW_FLASK_SERVER_SECRET_KEY="preflight-test",
    )
    command = [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth"]
    command += ["--backend-store-uri", f"sqlite:///{state / 'mlflow.db'}", "--workers", "1"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with (state / "server.log").open("wb") as log:
        process = subprocess.Popen(
            command, env=environment, stdout=log, stderr=log, start_new_session=True
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", process, state / "server.log")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process, grace=10)


def wait_for_http(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer; see {log}")


@pytest.mark.slow
def test_real_mlflow_server_rejects_a_wrong_password_and_accepts_the_right_one(
    mlflow_basic_auth: str,
) -> None:
    assert check_mlflow(mlflow_basic_auth, "admin", "right-Pass-1").ok
    wrong = check_mlflow(mlflow_basic_auth, "admin", "wrong")
    assert wrong.message.endswith("MLflow rejected user admin: check MLFLOW_TRACKING_PASSWORD")
    anonymous = check_mlflow(mlflow_basic_auth, None, None)
    assert "requires a login" in anonymous.message


# --- Prefect: a real server with an auth string (slow: ~20-60 s to start here) ------------


@pytest.fixture(scope="module")
def prefect_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`prefect server start` with PREFECT_SERVER_API_AUTH_STRING=admin:right on a free port."""
    from flows.serve import wait_until_healthy

    home = tmp_path_factory.mktemp("prefect-auth")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    environment = dict(
        os.environ,
        PREFECT_HOME=str(home),
        PREFECT_SERVER_API_AUTH_STRING="admin:right",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
    )
    environment.pop("PREFECT_API_URL", None)
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    with (home / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=environment,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        wait_until_healthy(api, timeout=180)
        yield api
    finally:
        stop(process, grace=10)


@pytest.mark.slow
def test_real_prefect_server_rejects_a_wrong_auth_string_and_accepts_the_right_one(
    prefect_with_auth: str,
) -> None:
    assert check_prefect(prefect_with_auth, "admin:right").ok
    wrong = check_prefect(prefect_with_auth, "admin:wrong")
    assert "rejected PREFECT_API_AUTH_STRING" in wrong.message
    missing = check_prefect(prefect_with_auth, None)
    assert "it requires an auth string: set PREFECT_API_AUTH_STRING" in missing.message


# --- the whole preflight, the worker's commit, the error -----------------------------------


def test_embedded_default_has_nothing_to_check_in_no_time(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    settings = Settings.from_environment(repo, environment={})
    assert preflight(settings, repo) == []  # the first call imports DVC's config reader
    started = time.monotonic()
    assert preflight(settings, repo) == []
    assert time.monotonic() - started < 0.2
    raise_if_failed([])
    assert format_results([]).startswith("nothing to check")


def test_preflight_runs_only_the_configured_checks(
    auth_endpoint: AuthEndpoint, tmp_path: Path
) -> None:
    repo = init_repo(tmp_path / "repo")
    environment = {
        "MLFLOW_TRACKING_URI": auth_endpoint.url,
        "MLFLOW_TRACKING_USERNAME": "alice",
        "MLFLOW_TRACKING_PASSWORD": "right",
        "PREFECT_API_URL": closed_url("/api"),
    }
    results = preflight(Settings.from_environment(repo, environment), repo)
    assert [(result.name.split(" ")[0], result.ok) for result in results] == [
        ("MLflow", True),
        ("Prefect", False),
    ]
    lines = format_results(results).splitlines()
    assert lines[0].startswith(f"ok     MLflow ({auth_endpoint.url})")
    assert lines[1].startswith("FAILED Prefect API at http://127.0.0.1:")


def test_raise_if_failed_lists_every_failing_service_one_line_each() -> None:
    results = [
        CheckResult("MLflow", False, "MLflow at http://a is unreachable: start it"),
        CheckResult("S3", True, "bucket reachable"),
        CheckResult("Prefect", False, "Prefect API at http://b: rejected the auth string"),
    ]
    with pytest.raises(PreflightError) as raised:
        raise_if_failed(results)
    assert isinstance(raised.value, ValueError)
    assert str(raised.value).splitlines() == [
        "preflight: 2 of 3 shared services not usable, nothing was run:",
        "- MLflow at http://a is unreachable: start it",
        "- Prefect API at http://b: rejected the auth string",
    ]


def git_head(repo: Path) -> str:
    subprocess.run(
        [
            "git",
            "-c",
            "user.email=t@e",
            "-c",
            "user.name=t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        cwd=repo,
        check=True,
    )
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True)
    return done.stdout.strip()


def test_worker_checkout_must_be_the_scheduled_commit(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    scheduled = git_head(repo)
    assert check_commit(scheduled, repo).ok
    assert check_commit(scheduled[:10], repo).ok
    newer = git_head(repo)
    result = check_commit(scheduled, repo)
    assert not result.ok
    assert result.message == (
        f"worker checkout at {newer}, run scheduled at {scheduled}: "
        f"the deployment's pull step must check out {scheduled}"
    )
    assert "not a git checkout" in check_commit(scheduled, tmp_path).message
