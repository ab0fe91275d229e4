"""One run per checkout: while another process runs imgflow here, `imgflow run` and the retrain
flow stop at once with one line naming it, touching neither data/ nor dvc.lock; a killed run
leaves nothing that blocks the next one. The running one is a real child process."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.locks import RUN_LOCK_FILE, run_lock

REPO_ROOT = Path(__file__).resolve().parents[2]
FLOW_RUN = "poetic-cuscus"

RUNNER_SCRIPT = """
import sys
from pathlib import Path
from tasks.locks import RunInProgressError, run_lock

repo, flow_run = sys.argv[1:3]
try:
    with run_lock(Path(repo), flow_run or None):
        print("held", flush=True)
        sys.stdin.readline()
except RunInProgressError as error:
    print(error, flush=True)
"""


class Runner:
    """A child process holding the checkout's run lock as a running imgflow run would."""

    def __init__(self, repo: Path, flow_run: str = "") -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", RUNNER_SCRIPT, str(repo), flow_run],
            env=os.environ | {"PYTHONPATH": str(REPO_ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.output = b""

    def said(self, word: str, timeout: float) -> bool:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while word.encode() not in self.output and time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.1)
            if ready:
                chunk = os.read(self.process.stdout.fileno(), 4096)
                if not chunk:
                    break
                self.output += chunk
        return word.encode() in self.output

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def runners() -> Iterator[list[Runner]]:
    """Child runners, each killed at teardown even when the test fails."""
    started: list[Runner] = []
    yield started
    for runner in started:
        runner.stop()


def running(runners: list[Runner], repo: Path, flow_run: str = "") -> Runner:
    runner = Runner(repo, flow_run)
    runners.append(runner)
    assert runner.said("held", 60), runner.process.stderr and runner.process.stderr.read()
    return runner


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A checkout as a run would find it: data/ and dvc.lock (contents do not matter here)."""
    repo = tmp_path / "repo"
    (repo / "data" / "0").mkdir(parents=True)
    (repo / "data" / "0" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    return repo


def snapshot(repo: Path) -> dict[str, tuple[int, bytes]]:
    """Every file of the checkout but the lock folder: modification time and bytes."""
    return {
        str(path.relative_to(repo)): (path.stat().st_mtime_ns, path.read_bytes())
        for path in repo.rglob("*")
        if path.is_file() and RUN_LOCK_FILE.parent.name not in path.parts
    }


def test_imgflow_run_stops_at_once_naming_the_running_one(
    checkout: Path,
    runners: list[Runner],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from flows.cli import main

    runner = running(runners, checkout, FLOW_RUN)
    before = snapshot(checkout)
    monkeypatch.chdir(checkout)
    began = time.monotonic()
    assert main(["run"]) == 1
    assert time.monotonic() - began < 2.0
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("another imgflow run is in progress in this checkout (")
    assert f"pid {runner.process.pid} on {socket.gethostname()} since " in err
    assert f"flow run '{FLOW_RUN}'); wait for it to finish or stop it" in err
    assert snapshot(checkout) == before
    assert not (checkout / ".dvc").exists()


def test_a_killed_run_does_not_block_the_next(checkout: Path, runners: list[Runner]) -> None:
    runner = running(runners, checkout)
    os.kill(runner.process.pid, signal.SIGKILL)
    runner.process.wait(timeout=10)
    stale = (checkout / RUN_LOCK_FILE).read_text()
    assert f'"pid": {runner.process.pid}' in stale  # the holder record outlives the process
    began = time.monotonic()
    with run_lock(checkout, "next-run"):
        assert time.monotonic() - began < 1.0
        assert '"flow_run": "next-run"' in (checkout / RUN_LOCK_FILE).read_text()


def test_the_cli_and_its_flow_share_the_lock_and_the_flow_run_is_named(
    checkout: Path, runners: list[Runner]
) -> None:
    """`imgflow run` takes the lock, then the flow it runs in the same process takes it again
    (no self-deadlock) and records its flow run's name, which another run's message shows."""
    with run_lock(checkout), run_lock(checkout, "flow-x"):
        other = Runner(checkout)
        runners.append(other)
        assert other.said("flow run 'flow-x'", 60)
        assert f"pid {os.getpid()} on" in other.output.decode()
    running(runners, checkout)  # released on the way out: another process takes it


@pytest.mark.pipeline
def test_retrain_flow_fails_with_the_line_while_another_run_holds_the_checkout(
    prefect_harness: None, checkout: Path, runners: list[Runner]
) -> None:
    """A deployed run (a schedule) meeting a manual one: a Failed state with that line, and
    no task ran (data/ and dvc.lock untouched)."""
    from flows.retrain import retrain

    runner = running(runners, checkout, FLOW_RUN)
    before = snapshot(checkout)
    state = retrain(repo=str(checkout), return_state=True)
    assert state.is_failed()
    message = state.message or ""
    assert "another imgflow run is in progress in this checkout (" in message
    assert f"pid {runner.process.pid} on {socket.gethostname()}" in message
    assert f"flow run '{FLOW_RUN}'); wait for it to finish or stop it" in message
    assert snapshot(checkout) == before
