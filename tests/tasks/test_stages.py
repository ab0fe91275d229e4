"""`run_stage` on a real one-stage DVC repository, with DVC's repository lock held by a second
process (DVC's own lock API): it retries while the lock is taken, then runs the stage; it gives
up naming the stage after `lock_attempts`; a failing stage is not retried."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.stages import StageError, pipeline_up_to_date, run_stage

# Holds DVC's repository lock (as a running `dvc repro` does) until a line arrives on stdin.
HOLD_LOCK = """
import sys
from dvc.repo import Repo
repo = Repo(sys.argv[1])
with repo.lock:
    print("locked", flush=True)
    sys.stdin.readline()
"""


def write_repo(root: Path, cmd: str) -> Path:
    root.mkdir()
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True)
    (root / "dvc.yaml").write_text(
        f"stages:\n  hello:\n    cmd: {cmd}\n    outs:\n      - out.txt\n"
    )
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return write_repo(tmp_path / "repo", "python -c \"open('out.txt', 'w').write('hi')\"")


@pytest.fixture
def lock_holder(repo: Path) -> Iterator[subprocess.Popen[str]]:
    """A second process holding the repo lock; write a line to its stdin to release it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(repo)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    yield holder
    if holder.poll() is None:
        holder.kill()
    holder.wait()


def release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.write("release\n")
    holder.stdin.flush()
    holder.wait(timeout=30)


def test_stage_waits_for_the_lock_then_runs(repo: Path, lock_holder: subprocess.Popen[str]) -> None:
    logged: list[str] = []

    def log(line: str) -> None:
        logged.append(line)
        if "lock taken" in line and lock_holder.poll() is None:
            release(lock_holder)  # the first attempt met the lock: free it for the next

    result = run_stage("hello", repo, log=log, lock_attempts=5)
    assert (result.stage, result.ran) == ("hello", True)
    assert (repo / "out.txt").read_text() == "hi"
    assert [line for line in logged if "lock taken" in line] == [
        "[hello] DVC repository lock taken, retrying (1/5)"
    ]
    assert not any("Unable to acquire lock" in line for line in logged)


def test_lock_never_freed_fails_naming_the_stage_after_the_attempts(
    repo: Path, lock_holder: subprocess.Popen[str]
) -> None:
    logged: list[str] = []
    with pytest.raises(StageError, match=r"'hello': repository lock still taken after 2 tries"):
        run_stage("hello", repo, log=logged.append, lock_attempts=2)
    assert sum("lock taken" in line for line in logged) == 1
    assert not (repo / "out.txt").exists()


def test_failing_stage_raises_with_its_output_and_is_not_retried(tmp_path: Path) -> None:
    broken = write_repo(
        tmp_path / "broken", "python -c \"import sys; print('disk on fire'); sys.exit(3)\""
    )
    logged: list[str] = []
    with pytest.raises(
        StageError, match=r"(?s)DVC stage 'hello' failed \(exit \d+\):.*disk on fire"
    ):
        run_stage("hello", broken, log=logged.append, lock_attempts=5)
    assert not any("lock taken" in line for line in logged)


def test_up_to_date_stage_is_reported_as_not_run(repo: Path) -> None:
    assert not pipeline_up_to_date(repo)
    assert run_stage("hello", repo, log=lambda line: None).ran
    assert pipeline_up_to_date(repo)
    again = run_stage("hello", repo, log=lambda line: None)
    assert (again.stage, again.ran) == ("hello", False)
