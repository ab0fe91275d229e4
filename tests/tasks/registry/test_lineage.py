"""Lineage facts: data version from data.dvc, git commit (dirty marker), params and DVC hashes."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tasks.registry import lineage

DATA_MD5 = "0123456789abcdef0123456789abcdef.dir"


def test_git_commit_outside_git_is_unknown(tmp_path: Path) -> None:
    assert lineage.git_commit(tmp_path) == "unknown"


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_commit_marks_tracked_changes_dirty(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q")
    (tmp_path / "file.txt").write_text("a")
    git("add", "file.txt")
    git("commit", "-q", "-m", "init")
    sha = git("rev-parse", "HEAD")
    assert lineage.git_commit(tmp_path) == sha
    (tmp_path / "untracked.txt").write_text("ignored")
    assert lineage.git_commit(tmp_path) == sha
    (tmp_path / "file.txt").write_text("b")
    assert lineage.git_commit(tmp_path) == f"{sha}-dirty"


def test_data_version_and_hashes(tmp_path: Path) -> None:
    with pytest.raises(lineage.LineageError, match=r"data\.dvc"):
        lineage.data_version(tmp_path)
    (tmp_path / "data.dvc").write_text(yaml.safe_dump({"outs": [{"md5": DATA_MD5}]}))
    assert lineage.data_version(tmp_path) == DATA_MD5
    (tmp_path / "data.dvc").write_text(yaml.safe_dump({"outs": []}))
    with pytest.raises(lineage.LineageError, match="found no md5"):
        lineage.data_version(tmp_path)
    assert lineage.params_hash({"b": 1, "a": [1, 2]}) == lineage.params_hash({"a": [1, 2], "b": 1})
    canonical = b'{"a":[1,2],"b":1}'
    assert lineage.params_hash({"b": 1, "a": [1, 2]}) == hashlib.sha256(canonical).hexdigest()[:12]
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.keras").write_bytes(b"x")
    listing = b'[{"md5": "9dd4e461268c8034f5c8564e155c67a6", "relpath": "model.keras"}]'
    assert lineage.dir_md5(folder) == hashlib.md5(listing).hexdigest() + ".dir"
    (folder / "model.keras").write_bytes(b"y")
    assert lineage.file_md5(folder / "model.keras") == "415290769594460e2e485922904f345d"
