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


def _dvc_once(
    args: list[str], repo: Path, log: Callable[[str], None], label: str, environment: dict[str, str]
) -> tuple[int, list[str]]:
    """One `dvc <args>`: (exit code, output lines), logged as they come."""
    process = subprocess.Popen(
        dvc_command(*args),
        cwd=repo,
        env={**stage_environment(), **environment},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines: list[str] = []
    for line in process.stdout or []:
        lines.append(line.rstrip())
        if line.strip() and LOCK_MESSAGE not in line:
            log(f"[{label}] {line.rstrip()}")
    return process.wait(), lines


def run_dvc(
    args: list[str],
    repo: Path = Path("."),
    log: Callable[[str], None] = print,
    label: str = "dvc",
    environment: dict[str, str] | None = None,
    lock_attempts: int = 30,
) -> list[str]:
    """Run `dvc <args>`, retrying while another DVC process holds the repository lock; its
    output lines. Raises StageError with the output's tail when it fails."""
    for attempt in range(1, lock_attempts + 1):
        code, lines = _dvc_once(args, repo, log, label, environment or {})
        if code == 0:
            return lines
        if LOCK_MESSAGE not in "\n".join(lines):
            tail = "\n".join(lines[-25:])
            raise StageError(f"DVC stage '{label}' failed (exit {code}):\n{tail}")
        if attempt < lock_attempts:
            log(f"[{label}] DVC repository lock taken, retrying ({attempt}/{lock_attempts})")
            time.sleep(random.uniform(0.2, 1.5))
    raise StageError(
        f"DVC stage '{label}': repository lock still taken after {lock_attempts} tries"
    )


def run_stage(
    stage: str,
    repo: Path = Path("."),
    log: Callable[[str], None] = print,
    lock_attempts: int = 30,
    pull: bool = False,
    environment: dict[str, str] | None = None,
) -> StageRun:
    """`dvc repro --single-item <stage>`: runs it only when its deps, params or code changed.

    With `pull`, missing inputs come from the DVC remote, and a result some other host pushed
    with its run-cache is restored instead of re-run (`dvc repro --pull`). Raises StageError
    naming the stage when it fails, or when DVC's repository lock is still taken after
    `lock_attempts` tries.
    """
    started = time.perf_counter()
    args = ["repro", "--single-item", *(["--pull"] if pull else []), stage]
    output = "\n".join(run_dvc(args, repo, log, stage, environment, lock_attempts))
    ran = f"Running stage '{stage}'" in output
    return StageRun(stage, ran, round(time.perf_counter() - started, 2))


def restored_from_run_cache(lines: list[str], stage: str) -> bool:
    return any(f"Stage '{stage}' is cached - skipping run" in line for line in lines)


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


def has_remote(repo: Path = Path(".")) -> bool:
    """True when the checkout has a default DVC remote (a team setup)."""
    with open_dvc_repo(repo) as dvc_repo:
        return bool(dvc_repo.config["core"].get("remote"))


def push(
    repo: Path,
    targets: list[str] | None = None,
    run_cache: bool = False,
    log: Callable[[str], None] = print,
) -> None:
    """`dvc push` (of `targets`, default everything dvc.lock names), with DVC's run-cache when
    `run_cache`, so another host's `dvc repro --pull` restores those stages instead of running
    them."""
    args = ["push", *(["--run-cache"] if run_cache else []), *(targets or [])]
    run_dvc(args, repo, log, label="dvc push")


def push_stage_results(repo: Path, stage: str, log: Callable[[str], None] = print) -> None:
    """`dvc push --run-cache <stage>`, plus the objects of the stage's `cache: false` outputs.

    DVC's run-cache keeps those outputs (so another host can restore them) but its push leaves
    their objects behind (DVC 3.67), and the other host's restore then fails with "Missing cache
    files"; they are pushed here through DVC's own data cloud.
    """
    push(repo, [stage], run_cache=True, log=log)
    with open_dvc_repo(repo) as dvc_repo:
        hashes = [
            out.hash_info
            for found in dvc_repo.stage.collect(stage)
            for out in found.outs
            if not out.use_cache and out.hash_info
        ]
        result = dvc_repo.cloud.push(hashes) if hashes else None
    if result is not None and result.failed:
        raise StageError(f"dvc push of {stage}'s uncached outputs failed: {result.failed}")
