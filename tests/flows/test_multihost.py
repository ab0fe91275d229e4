"""Two hosts on one machine (marked topology; needs PostgreSQL on 127.0.0.1:5432).

A scheduler clone and worker clones in separate folders, each with its own HOME, PREFECT_HOME
and DVC cache; the servers (MLflow and Prefect on PostgreSQL, an S3 store, a git daemon)
listen on one side of a veth link and, where the machine allows it (root, `ip netns`), the
workers run in their own network namespace and reach them only over that link. The workers
start with environment variables only (`imgflow worker --pool gpu`).

The run in worker mode: three `train-model` runs complete on the workers, the GAN's training
is SIGKILLed mid-run on worker A and its retry on worker B resumes from the checkpoint copy in
S3; three versions are registered with their artifacts as objects in the bucket; the
scheduler's dvc.lock records the trainings (`dvc status` clean), a second run trains nothing,
and `dvc repro` in a third clone reproduces nothing.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from flows.serve import free_port, free_ports, start_process, stop_processes, wait_until_answering
from flows.team import configure_dvc_remote, team_stack
from flows.team_config import (
    WEED_PORT_FLAGS,
    private_team_environment,
    s3_client,
    weed_command,
    worker_environment,
)
from tasks.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "AWS_ACCESS_KEY_ID": "hosts-key",
    "AWS_SECRET_ACCESS_KEY": "hosts-secret-value",
    "IMGFLOW_MLFLOW_ADMIN_PASSWORD": "hosts-admin-password",
    "IMGFLOW_PREFECT_AUTH_STRING": "prefect:hosts-token",
}
BUCKET = "imgflow-hosts"
GAN_EPOCHS = 40  # long enough to be killed mid-run after the classifiers' 2 epochs are done
RUN_TIMEOUT = 1200


pytestmark = pytest.mark.topology


@dataclass
class Link:
    """Where the servers listen and how a worker command is run: in a network namespace
    behind a veth pair when the machine allows it, else on loopback (said in the test log)."""

    host_ip: str
    namespace: str | None = None
    interface: str | None = None

    def wrap(self, command: list[str]) -> list[str]:
        if self.namespace is None:
            return command
        return ["ip", "netns", "exec", self.namespace, *command]

    def pids(self) -> list[int]:
        if self.namespace is None:
            return []
        listed = subprocess.run(
            ["ip", "netns", "pids", self.namespace], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in listed.stdout.split()]


def _ip(*args: str, namespace: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True)


def open_link() -> Link:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return Link("127.0.0.1")
    suffix = uuid.uuid4().hex[:6]
    octet = int(suffix[:2], 16) % 250 + 1
    namespace, outside, inside = f"imgflow-{suffix}", f"vh{suffix}", f"vw{suffix}"
    try:
        _ip("netns", "add", namespace)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", namespace)
        _ip("addr", "add", f"10.231.{octet}.1/30", "dev", outside)
        _ip("link", "set", outside, "up")
        _ip("addr", "add", f"10.231.{octet}.2/30", "dev", inside, namespace=namespace)
        _ip("link", "set", inside, "up", namespace=namespace)
        _ip("link", "set", "lo", "up", namespace=namespace)
    except subprocess.CalledProcessError:
        close_link(Link("", namespace, outside))
        return Link("127.0.0.1")
    return Link(f"10.231.{octet}.1", namespace, outside)


def close_link(link: Link) -> None:
    for pid in link.pids():  # nothing started in the namespace outlives the test
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()
    if link.interface:
        subprocess.run(["ip", "link", "del", link.interface], check=False, capture_output=True)
    if link.namespace:
        subprocess.run(["ip", "netns", "del", link.namespace], check=False, capture_output=True)


@dataclass
class Hosts:
    link: Link
    settings: Settings
    root: Path
    git_url: str
    origin: Path
    git: Callable[..., str]  # git as a test user (tests/conftest.py)
    processes: list[subprocess.Popen] = field(default_factory=list)

    def host_environment(self, home: Path) -> dict[str, str]:
        """A host's own HOME, PREFECT_HOME and DVC cache; the team's addresses and secrets."""
        home.mkdir(parents=True, exist_ok=True)
        keep = {
            k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TF_CPP_MIN_LOG_LEVEL")
        }
        environment = {**keep, **worker_environment(self.settings)}
        environment.update(
            HOME=str(home),
            PREFECT_HOME=str(home / ".prefect"),
            IMGFLOW_DVC_CACHE_DIR=str(home / "dvc-cache"),
            IMGFLOW_GIT_URL=self.git_url,
            PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
            GIT_AUTHOR_NAME="test",
            GIT_AUTHOR_EMAIL="test@example.com",
            GIT_COMMITTER_NAME="test",
            GIT_COMMITTER_EMAIL="test@example.com",
        )
        return environment

    def start_worker(self, name: str) -> subprocess.Popen:
        """A worker host: its own clone of the code (for its Python environment), HOME and
        caches; it starts from environment variables only and trains in fresh clones."""
        checkout = self.root / name / "checkout"
        subprocess.run(["git", "clone", "-q", str(self.origin), str(checkout)], check=True)
        environment = self.host_environment(self.root / name / "home")
        environment.pop("IMGFLOW_LOCK_URL")  # a worker takes no promotion lock
        command = [sys.executable, "-m", "flows.cli", "worker", "--pool", "gpu", "--limit", "3"]
        process = subprocess.Popen(
            self.link.wrap(command),
            cwd=checkout,
            env=environment,
            stdout=(self.root / f"{name}.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def api(self, path: str, body: dict) -> list[dict]:
        token = base64.b64encode((self.settings.prefect_auth_string or "").encode()).decode()
        url = f"http://{self.link.host_ip}:{self.settings.prefect_port}/api{path}"
        response = httpx.post(url, json=body, headers={"Authorization": f"Basic {token}"})
        response.raise_for_status()
        return list(response.json())

    def train_model_runs(self) -> list[dict]:
        body = {"flows": {"name": {"any_": ["train-model"]}}, "limit": 200}
        return self.api("/flow_runs/filter", body)


def _wait(condition: Callable[[], bool], what: str, timeout: float, process=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the run ended first (exit {process.returncode})")
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _start_store(
    link: Link, root: Path, settings: Settings, processes: list[subprocess.Popen]
) -> None:
    """The S3 store on the link's host side (weed mini; a private link, so its unauthenticated
    filer and master ports face only this test's namespace)."""
    ports = dict(zip(WEED_PORT_FLAGS, free_ports(len(WEED_PORT_FLAGS)), strict=True))
    (root / "s3").mkdir(parents=True)
    command = weed_command(settings, root / "s3", ports, host=link.host_ip)
    environment = {**os.environ, **SECRETS}
    processes.append(start_process(command, environment, root / "logs" / "weed.log"))
    wait_until_answering(f"{settings.s3_endpoint}/", processes[-1], "S3 store", 120)


def _start_git_daemon(link: Link, root: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [
        "git", "daemon", "--reuseaddr", "--export-all", f"--base-path={root}",
        f"--listen={link.host_ip}", f"--port={port}", str(root),
    ]  # fmt: skip
    process = start_process(command, dict(os.environ), root / "logs" / "git-daemon.log")
    time.sleep(0.5)
    return process, f"git://{link.host_ip}:{port}/origin.git"


@pytest.fixture(scope="module")
def hosts(
    tmp_path_factory: pytest.TempPathFactory,
    team_databases: list[str],
    run_git: Callable[..., str],
) -> Iterator[Hosts]:
    root = tmp_path_factory.mktemp("hosts")
    link = open_link()
    team = private_team_environment(root / "state", BUCKET, team_databases, link.host_ip)
    # The store is started here on the link (serve-team keeps its own store on loopback), so
    # the stack treats it as an external one.
    store = f"http://{link.host_ip}:{team['IMGFLOW_S3_PORT']}"
    environment = {**SECRETS, **team, "IMGFLOW_S3_ENDPOINT": store}
    settings = Settings.from_environment(REPO_ROOT, environment=environment)
    processes: list[subprocess.Popen] = []
    try:
        _start_store(link, root, settings, processes)
        daemon, git_url = _start_git_daemon(link, root)
        processes.append(daemon)
        with team_stack(settings, root / "logs", mlflow_workers=1):
            found = Hosts(link, settings, root, git_url, root / "origin.git", run_git)
            try:
                yield found
            finally:
                stop_with_children(found.processes)
    finally:
        stop_processes(processes)
        close_link(link)


def stop_with_children(processes: list[subprocess.Popen]) -> None:
    """Stop the processes and every process they started (flow runs, trainings, DVC), also
    those that left the process group."""
    children = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            children += psutil.Process(process.pid).children(recursive=True)
    stop_processes(processes)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()


def _run(command: list[str], cwd: Path, environment: dict[str, str], timeout: float = 600):
    return subprocess.run(
        command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout
    )


def _scheduler(hosts: Hosts, build_repo: Callable[..., Path]) -> tuple[Path, dict[str, str]]:
    """The scheduling host's clone: the code pushed to origin with the team's DVC remote."""

    def longer_gan(params: dict) -> None:
        params["train"]["gan"]["epochs"] = GAN_EPOCHS

    scheduler = build_repo(hosts.root / "scheduler" / "checkout", longer_gan)
    configure_dvc_remote(scheduler, hosts.settings)
    hosts.git(scheduler, "add", "-A")
    hosts.git(scheduler, "commit", "-q", "-m", "team remote")
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(hosts.origin)], check=True)
    hosts.git(scheduler, "remote", "add", "origin", str(hosts.origin))
    hosts.git(scheduler, "push", "-q", "-u", "origin", "main")
    return scheduler, hosts.host_environment(hosts.root / "scheduler" / "home")


def _training_pids(worker: subprocess.Popen, model: str) -> list[int]:
    """The `python -m tasks.train <model>` process (and DVC's shell around it) under a worker."""
    found = []
    for child in psutil.Process(worker.pid).children(recursive=True):
        try:
            command = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "-m tasks.train" in command and command.rstrip().endswith(f" {model}"):
            found.append(int(child.pid))
    return found


def _shared_epoch(hosts: Hosts, model: str) -> int:
    client = s3_client(hosts.settings)
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=f"checkpoints/{model}/")
    for item in listed.get("Contents", []):
        if item["Key"].endswith("/latest.json"):
            body = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            return int(json.loads(body)["epoch"])
    return 0


def _states(hosts: Hosts) -> dict[str, list[str]]:
    states: dict[str, list[str]] = {}
    for run in hosts.train_model_runs():
        states.setdefault(run["name"], []).append((run.get("state") or {}).get("type", ""))
    return states


def test_worker_mode_across_hosts(hosts: Hosts, build_repo: Callable[..., Path]) -> None:
    scheduler, environment = _scheduler(hosts, build_repo)
    worker_a = hosts.start_worker("worker-a")
    run = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "run"],
        cwd=scheduler,
        env=environment,
        stdout=(hosts.root / "run-1.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    hosts.processes.append(run)
    # Worker A trains all three; once the classifiers are done and the GAN has copied at
    # least two epochs to S3, the GAN's training process is SIGKILLed (a preempted GPU).
    done = {"train-cnn", "train-rnn"}

    def classifiers_done_gan_midway() -> bool:
        states = _states(hosts)
        return all("COMPLETED" in states.get(name, []) for name in done) and (
            _shared_epoch(hosts, "gan") >= 2
        )

    _wait(classifiers_done_gan_midway, "classifiers trained, GAN at epoch 2", RUN_TIMEOUT, run)
    pids = _training_pids(worker_a, "gan")
    assert pids, "the GAN finished before it could be killed: raise GAN_EPOCHS"
    killed_at = _shared_epoch(hosts, "gan")
    for pid in pids:
        os.kill(pid, 9)
    _wait(lambda: "FAILED" in _states(hosts).get("train-gan", []), "gan run failed", 120, run)
    stop_processes([worker_a])  # host A is gone; the retry must go to host B
    hosts.start_worker("worker-b")
    assert run.wait(timeout=RUN_TIMEOUT) == 0, (hosts.root / "run-1.log").read_text()[-3000:]

    states = _states(hosts)
    assert {name: sorted(found) for name, found in states.items()} == {
        "train-cnn": ["COMPLETED"],
        "train-rnn": ["COMPLETED"],
        "train-gan": ["COMPLETED", "FAILED"],
    }
    gan = json.loads((scheduler / "artifacts/models/gan/train.json").read_text())
    assert gan["resumed_at_epoch"] >= killed_at >= 2  # resumed on B from A's last copy
    assert gan["epochs_run"] == GAN_EPOCHS  # epochs counted across the kill
    assert all(len(values) == GAN_EPOCHS for values in gan["history"].values())
    assert _shared_epoch(hosts, "gan") == 0  # the finished training's copy is discarded

    _assert_registered_with_artifacts_in_s3(hosts, environment)
    status = _run([sys.executable, "-m", "dvc", "status"], scheduler, environment)
    assert "up to date" in status.stdout, status.stdout

    # A second run finds nothing to do and dispatches nothing.
    runs_before = len(hosts.train_model_runs())
    again = _run([sys.executable, "-m", "flows.cli", "run"], scheduler, environment)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "stages run: none" in again.stdout
    assert len(hosts.train_model_runs()) == runs_before

    _assert_third_clone_reproduces_nothing(hosts, scheduler, environment)


def _assert_registered_with_artifacts_in_s3(hosts: Hosts, environment: dict[str, str]) -> None:
    from mlflow import MlflowClient

    os.environ.update(
        MLFLOW_TRACKING_USERNAME=environment["MLFLOW_TRACKING_USERNAME"],
        MLFLOW_TRACKING_PASSWORD=environment["MLFLOW_TRACKING_PASSWORD"],
    )
    client = MlflowClient(environment["MLFLOW_TRACKING_URI"])
    versions = client.search_model_versions()
    assert sorted(version.name for version in versions) == [
        "digits-cnn",
        "digits-gan",
        "digits-rnn",
    ]
    listed = s3_client(hosts.settings).list_objects_v2(Bucket=BUCKET, Prefix="mlflow/")
    keys = [item["Key"] for item in listed.get("Contents", [])]
    for version in versions:
        # MLflow 3 keeps a logged model's files under its model id, others under the run id.
        owner = getattr(version, "model_id", None) or version.run_id
        assert any(owner in key for key in keys), f"{version.name}: no objects in the bucket"


def _assert_third_clone_reproduces_nothing(
    hosts: Hosts, scheduler: Path, environment: dict[str, str]
) -> None:
    hosts.git(scheduler, "add", "-A")
    hosts.git(scheduler, "commit", "-q", "-m", "run results")
    hosts.git(scheduler, "push", "-q", "origin", "main")
    third = hosts.root / "third" / "checkout"
    subprocess.run(["git", "clone", "-q", str(hosts.origin), str(third)], check=True)
    third_environment = hosts.host_environment(hosts.root / "third" / "home")
    pulled = _run([sys.executable, "-m", "dvc", "pull"], third, third_environment)
    assert pulled.returncode == 0, pulled.stderr[-2000:]
    repro = _run([sys.executable, "-m", "dvc", "repro"], third, third_environment)
    assert repro.returncode == 0, repro.stderr[-2000:]
    assert "Running stage" not in repro.stdout, repro.stdout[-2000:]
    assert (third / "dvc.lock").read_text() == (scheduler / "dvc.lock").read_text()
