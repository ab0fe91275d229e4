"""Lineage facts attached to every registered model: code commit, data version, params, artifacts.

Each value answers "what exactly produced this model?": `git_commit` names the code, the
`data.dvc` md5 names the data (`dvc checkout` restores it), `params_hash` names the settings and
`dir_md5` names the trained artifact in the same form DVC writes into dvc.lock.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tasks.paths import DATA_DVC_FILE

UNKNOWN_COMMIT = "unknown"
_CHUNK = 1 << 20


class LineageError(ValueError):
    """A lineage input (e.g. data.dvc) is missing or malformed; the message names the file."""


def data_version(root: Path = Path(".")) -> str:
    """The md5 DVC recorded for `data/` in data.dvc: the id `dvc checkout` restores."""
    path = Path(root) / DATA_DVC_FILE
    if not path.is_file():
        raise LineageError(f"{path} not found: ingest the data and run `dvc add data` first")
    try:
        record = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise LineageError(f"{path}: not valid YAML ({error})") from error
    outs = record.get("outs") if isinstance(record, dict) else None
    md5 = (
        outs[0].get("md5")
        if isinstance(outs, list) and outs and isinstance(outs[0], dict)
        else None
    )
    if not isinstance(md5, str) or not md5:
        raise LineageError(f"{path}: expected `outs: [{{md5: ..., path: data}}]`, found no md5")
    return md5


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit(root: Path = Path(".")) -> str:
    """HEAD's sha, suffixed "-dirty" when tracked files differ from it; "unknown" outside git.

    Never raises: lineage is recorded on a best-effort basis and must not stop registration.
    """
    sha = _git(Path(root), "rev-parse", "--verify", "HEAD")
    if not sha:
        return UNKNOWN_COMMIT
    status = _git(Path(root), "status", "--porcelain", "--untracked-files=no")
    return f"{sha}-dirty" if status else sha


def params_hash(obj: Any) -> str:
    """First 12 hex digits of the sha256 of `obj` as canonical (sorted, compact) JSON."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def file_md5(path: Path) -> str:
    """md5 of a file's bytes (the hash DVC uses for a single-file output)."""
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def dir_md5(path: Path) -> str:
    """DVC-style directory hash: md5 of the sorted [{md5, relpath}] JSON list, plus ".dir".

    Matches the md5 DVC writes for a directory output, so a registered model's `model_md5`
    tag can be compared with dvc.lock directly.
    """
    path = Path(path)
    if not path.is_dir():
        raise LineageError(f"{path} is not a directory")
    entries = sorted(
        (
            {"md5": file_md5(file), "relpath": file.relative_to(path).as_posix()}
            for file in path.rglob("*")
            if file.is_file()
        ),
        key=lambda entry: entry["relpath"],
    )
    listing = json.dumps(entries, sort_keys=True).encode("utf-8")
    return hashlib.md5(listing, usedforsecurity=False).hexdigest() + ".dir"
