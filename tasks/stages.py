"""Run DVC stages from Python, so an orchestrator executes the pipeline that `dvc repro` defines.

DVC holds one repository lock while it checks and records a stage (not while the stage's command
runs), so stages started at once may briefly find it taken: that case is retried here with
jittered back-off; every other failure is raised with the stage's own output.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCK_MESSAGE = "Unable to acquire lock"


class StageError(RuntimeError):
    """A DVC stage failed; the message carries the tail of its output."""


@dataclass(frozen=True)
class StageRun:
    stage: str
    ran: bool  # False when DVC found the stage up to date and skipped it
    seconds: float


def dvc_command(*args: str) -> list[str]:
    """`dvc ...` with this interpreter, so stage commands see the same environment."""
    return [sys.executable, "-m", "dvc", *args]


def stage_environment() -> dict[str, str]:
    """The current environment with this interpreter's bin folder first on PATH."""
    environment = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    environment["PATH"] = os.pathsep.join([bin_dir, environment.get("PATH", "")])
    return environment


def _repro_once(stage: str, repo: Path, log: Callable[[str], None]) -> tuple[int, list[str]]:
    """One `dvc repro --single-item <stage>`: (exit code, output lines), logged as they come."""
    process = subprocess.Popen(
        dvc_command("repro", "--single-item", stage),
        cwd=repo,
        env=stage_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines: list[str] = []
    for line in process.stdout or []:
        lines.append(line.rstrip())
        if line.strip() and LOCK_MESSAGE not in line:
            log(f"[{stage}] {line.rstrip()}")
    return process.wait(), lines


def run_stage(
    stage: str,
    repo: Path = Path("."),
    log: Callable[[str], None] = print,
    lock_attempts: int = 30,
) -> StageRun:
    """`dvc repro --single-item <stage>`: runs it only when its deps, params or code changed.

    Raises StageError naming the stage when it fails, or when DVC's repository lock is still
    taken after `lock_attempts` tries.
    """
    started = time.perf_counter()
    for attempt in range(1, lock_attempts + 1):
        code, lines = _repro_once(stage, repo, log)
        output = "\n".join(lines)
        if code == 0:
            ran = f"Running stage '{stage}'" in output
            return StageRun(stage, ran, round(time.perf_counter() - started, 2))
        if LOCK_MESSAGE not in output:
            tail = "\n".join(lines[-25:])
            raise StageError(f"DVC stage '{stage}' failed (exit {code}):\n{tail}")
        if attempt < lock_attempts:
            log(f"[{stage}] DVC repository lock taken, retrying ({attempt}/{lock_attempts})")
            time.sleep(random.uniform(0.2, 1.5))
    raise StageError(
        f"DVC stage '{stage}': repository lock still taken after {lock_attempts} tries"
    )


@contextlib.contextmanager
def open_dvc_repo(repo: Path) -> Iterator[Any]:
    """DVC's Python API, run from inside the repository: DVC resolves some paths against the
    working directory, and a Prefect worker's flow runs start elsewhere."""
    from dvc.repo import Repo

    with contextlib.chdir(repo), Repo(".") as dvc_repo:
        yield dvc_repo


def pipeline_up_to_date(repo: Path = Path(".")) -> bool:
    """True when `dvc status` finds no changed data, params, code or outputs anywhere."""
    with open_dvc_repo(repo) as dvc_repo:
        return not dvc_repo.status()


def sync_data_version(repo: Path = Path(".")) -> None:
    """On a worker with a DVC remote, fetch the data and stage outputs that dvc.lock names;
    a worker sharing the parent's checkout (no remote) already has them."""
    with open_dvc_repo(repo) as dvc_repo:
        if dvc_repo.config.get("remote"):
            dvc_repo.pull()


def push_outputs(repo: Path, stage: str) -> None:
    """Send a stage's outputs to the DVC remote (when there is one) for the parent to pull."""
    with open_dvc_repo(repo) as dvc_repo:
        if dvc_repo.config.get("remote"):
            dvc_repo.push(targets=[stage])
