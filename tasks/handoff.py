"""The hand-off of one training between a scheduling host and a worker host with no shared disk.

The scheduler runs ingest, prepare and validate, pushes their outputs to the DVC remote and
sends the worker a `Handoff`: the commit of its code, the data version, and the two records the
worker's fresh clone cannot have yet: the scheduler's `dvc.lock` (which names the prepared data
by hash, so `dvc repro --pull` fetches exactly it) and `metrics/validation.json` (a train
dependency that DVC does not cache). The worker checks all three agree, trains through
`dvc repro`, and pushes the outputs with DVC's run-cache; the scheduler's own `dvc repro --pull`
then finds that run-cache entry and restores the training instead of running it.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from tasks.paths import VALIDATION_METRICS
from tasks.registry.lineage import data_version
from tasks.settings import Settings

LOCK_FILE = "dvc.lock"
# What a training's code is made of: a worker trains these files at the scheduler's commit, so
# uncommitted changes to them would train other code than the run records.
CODE_PATHS = (
    "tasks",
    "models",
    "flows",
    "params.yaml",
    "dvc.yaml",
    "pyproject.toml",
    "uv.lock",
    ".dvc/config",
)
MAX_TEXT_BYTES = 4_000_000  # Prefect keeps parameters in its database: refuse to send more


class HandoffError(ValueError):
    """The scheduler cannot hand a training off, or the worker received an inconsistent one."""


@dataclass(frozen=True)
class Handoff:
    commit: str  # the code a worker trains: the scheduler's HEAD
    data_version: str  # md5 of data/ in data.dvc
    dvc_lock: str  # the scheduler's dvc.lock, text
    validation_report: str  # the scheduler's metrics/validation.json, text

    def as_parameters(self) -> dict[str, str]:
        return asdict(self)


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=False, timeout=60
    )
    if done.returncode != 0:
        raise HandoffError(f"git {' '.join(args)} failed in {repo}: {done.stderr.strip()}")
    return done.stdout.rstrip()  # not strip(): `git status --porcelain` lines start with a space


def uncommitted_code(repo: Path) -> list[str]:
    """Code files that differ from HEAD (modified, staged or untracked), as `git status` shows."""
    status = _git(repo, "status", "--porcelain", "--untracked-files=all", "--", *CODE_PATHS)
    return [line[3:] for line in status.splitlines() if line.strip()]


def commit_on_a_remote(repo: Path, commit: str) -> bool:
    """True when some remote-tracking branch contains `commit` (workers clone from a remote)."""
    return bool(_git(repo, "branch", "--remotes", "--contains", commit))


def check_code_shippable(repo: Path) -> str:
    """HEAD's hash, once the code is committed and pushed; else HandoffError saying what to do."""
    changed = uncommitted_code(repo)
    if changed:
        shown = ", ".join(changed[:8]) + (" ..." if len(changed) > 8 else "")
        raise HandoffError(
            f"worker mode trains the code at a commit, but {len(changed)} code file(s) differ "
            f"from HEAD ({shown}): commit and push them, or run with training_mode=in-process"
        )
    commit = _git(repo, "rev-parse", "HEAD")
    if not commit_on_a_remote(repo, commit):
        raise HandoffError(
            f"commit {commit[:12]} is on no remote branch, so workers cannot clone it: "
            "`git push` it (workers clone IMGFLOW_GIT_URL at this commit)"
        )
    return commit


def build_handoff(repo: Path, commit: str) -> Handoff:
    """What a worker needs besides the remote's objects, read from the scheduler's checkout."""
    texts = []
    for name in (LOCK_FILE, str(VALIDATION_METRICS)):
        path = repo / name
        if not path.is_file():
            raise HandoffError(f"{path} not found: run prepare and validate before training")
        if path.stat().st_size > MAX_TEXT_BYTES:
            raise HandoffError(f"{path} is over {MAX_TEXT_BYTES} bytes: too large to hand off")
        texts.append(path.read_text())
    return Handoff(commit, data_version(repo), texts[0], texts[1])


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _stage_entry(lock: dict[str, Any], stage: str, kind: str, path: str) -> dict[str, Any]:
    entries = lock.get("stages", {}).get(stage, {}).get(kind, [])
    for entry in entries:
        if entry.get("path") == path:
            return dict(entry)
    raise HandoffError(f"the handed-off dvc.lock has no {kind} entry {path!r} in stage {stage!r}")


def check_handoff(handoff: Handoff) -> None:
    """The lock, the data version and the validation report describe one and the same run."""
    try:
        lock = yaml.safe_load(handoff.dvc_lock)
    except yaml.YAMLError as error:
        raise HandoffError(f"the handed-off dvc.lock is not YAML: {error}") from error
    if not isinstance(lock, dict):
        raise HandoffError("the handed-off dvc.lock is not a DVC lock file")
    prepared_from = _stage_entry(lock, "prepare", "deps", "data").get("md5")
    if prepared_from != handoff.data_version:
        raise HandoffError(
            f"the run asked for data version {handoff.data_version}, but its dvc.lock prepared "
            f"data version {prepared_from}: the scheduler's checkout changed during the run"
        )
    recorded = _stage_entry(lock, "validate", "outs", str(VALIDATION_METRICS)).get("md5")
    if recorded != _md5(handoff.validation_report):
        raise HandoffError(
            f"the handed-off {VALIDATION_METRICS} does not match the md5 its dvc.lock records"
        )


def apply_handoff(handoff: Handoff, checkout: Path) -> None:
    """Make a worker's clone at `handoff.commit` look like the scheduler's checkout to DVC."""
    head = _git(checkout, "rev-parse", "HEAD")
    if head != handoff.commit:
        raise HandoffError(
            f"worker checkout {checkout} is at {head[:12]}, the run was scheduled at "
            f"{handoff.commit[:12]}: the deployment's pull step must clone that commit"
        )
    check_handoff(handoff)
    (checkout / LOCK_FILE).write_text(handoff.dvc_lock)
    report = checkout / VALIDATION_METRICS
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(handoff.validation_report)


def configure_worker_checkout(checkout: Path, settings: Settings) -> None:
    """Per-host DVC settings of a worker's fresh clone, from the worker's environment, written
    to the clone's untracked .dvc/config.local: the host's cache folder kept across runs
    (IMGFLOW_DVC_CACHE_DIR) and the address this host reaches the S3 store at
    (IMGFLOW_S3_ENDPOINT; a GPU host may see the store at another address than the scheduler)."""
    from dvc.config import Config

    config = Config(dvc_dir=str(checkout / ".dvc"))
    remote = config["core"].get("remote")
    with config.edit("local") as local:
        if settings.dvc_cache_dir is not None:
            settings.dvc_cache_dir.mkdir(parents=True, exist_ok=True)
            local.setdefault("cache", {})["dir"] = str(settings.dvc_cache_dir)
        url = str(config["remote"].get(remote, {}).get("url", "")) if remote else ""
        if settings.s3_endpoint and url.startswith("s3://"):
            local.setdefault("remote", {}).setdefault(remote, {})["endpointurl"] = (
                settings.s3_endpoint
            )
