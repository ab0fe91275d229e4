"""The hand-off of a training to a worker host: what the scheduler refuses to send, what the
worker refuses to train on, and the per-host DVC settings of the worker's clone."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tasks.handoff import (
    Handoff,
    HandoffError,
    apply_handoff,
    build_handoff,
    check_code_shippable,
    configure_worker_checkout,
)
from tasks.settings import Settings

DATA_MD5 = "2cead6ee2890f3b034b41bcc6e63e87f.dir"
REPORT = '{"success": true}\n'


def _lock(data_md5: str = DATA_MD5, report: str = REPORT) -> str:
    report_md5 = hashlib.md5(report.encode()).hexdigest()
    return yaml.safe_dump(
        {
            "schema": "2.0",
            "stages": {
                "prepare": {"deps": [{"path": "data", "hash": "md5", "md5": data_md5}]},
                "validate": {
                    "outs": [{"path": "metrics/validation.json", "md5": report_md5}],
                },
            },
        }
    )


@pytest.fixture
def scheduler(tmp_path: Path, run_git: Callable[..., str]) -> Path:
    """A checkout with code, dvc.lock, data.dvc and a validation report, pushed to a remote."""
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    repo = tmp_path / "scheduler"
    (repo / "tasks").mkdir(parents=True)
    (repo / "tasks" / "train.py").write_text("EPOCHS = 1\n")
    (repo / "metrics").mkdir()
    (repo / "metrics" / "validation.json").write_text(REPORT)
    (repo / "dvc.lock").write_text(_lock())
    (repo / "data.dvc").write_text(yaml.safe_dump({"outs": [{"md5": DATA_MD5, "path": "data"}]}))
    run_git(repo.parent, "init", "-q", "-b", "main", str(repo))
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", "-m", "code")
    run_git(repo, "remote", "add", "origin", str(origin))
    run_git(repo, "push", "-q", "-u", "origin", "main")
    return repo


def test_the_scheduler_hands_off_its_pushed_commit_lock_and_report(
    scheduler: Path, run_git: Callable[..., str]
) -> None:
    commit = check_code_shippable(scheduler)
    assert commit == run_git(scheduler, "rev-parse", "HEAD")
    handoff = build_handoff(scheduler, commit)
    assert handoff == Handoff(commit, DATA_MD5, _lock(), REPORT)


def test_uncommitted_or_unpushed_code_is_refused_with_what_to_do(
    scheduler: Path, run_git: Callable[..., str]
) -> None:
    (scheduler / "tasks" / "train.py").write_text("EPOCHS = 2\n")
    (scheduler / "tasks" / "new_module.py").write_text("\n")
    (scheduler / "dvc.lock").write_text(_lock() + "\n")  # outputs may change: not code
    with pytest.raises(HandoffError, match=r"2 code file\(s\) differ from HEAD") as error:
        check_code_shippable(scheduler)
    assert "tasks/train.py" in str(error.value) and "tasks/new_module.py" in str(error.value)
    run_git(scheduler, "add", "-A")
    run_git(scheduler, "commit", "-q", "-m", "not pushed")
    with pytest.raises(HandoffError, match=r"is on no remote branch.*`git push` it"):
        check_code_shippable(scheduler)


def test_the_worker_checks_commit_data_version_and_report(
    scheduler: Path, tmp_path: Path, run_git: Callable[..., str]
) -> None:
    commit = run_git(scheduler, "rev-parse", "HEAD")
    worker = tmp_path / "worker"
    run_git(tmp_path, "clone", "-q", str(scheduler), str(worker))
    good = Handoff(commit, DATA_MD5, _lock(), REPORT)
    wrong_commit = Handoff("0" * 40, DATA_MD5, _lock(), REPORT)
    with pytest.raises(HandoffError, match="the run was scheduled at 000000000000"):
        apply_handoff(wrong_commit, worker)
    with pytest.raises(HandoffError, match=r"asked for data version other.*prepared data version"):
        apply_handoff(Handoff(commit, "other", _lock(), REPORT), worker)
    with pytest.raises(HandoffError, match=r"does not match the md5 its dvc\.lock records"):
        apply_handoff(Handoff(commit, DATA_MD5, _lock(), '{"success": false}\n'), worker)
    assert (worker / "dvc.lock").read_text() == _lock()  # nothing written by a refusal
    newer = _lock(report='{"success": true, "n": 2}\n')
    apply_handoff(Handoff(commit, DATA_MD5, newer, '{"success": true, "n": 2}\n'), worker)
    assert (worker / "dvc.lock").read_text() == newer
    assert (worker / "metrics" / "validation.json").read_text() == '{"success": true, "n": 2}\n'
    apply_handoff(good, worker)


def test_worker_clone_gets_the_hosts_cache_and_store_address(tmp_path: Path) -> None:
    checkout = tmp_path / "clone"
    checkout.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=checkout, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=checkout, check=True)
    subprocess.run(
        [sys.executable, "-m", "dvc", "remote", "add", "-d", "team", "s3://bucket/dvc"],
        cwd=checkout,
        check=True,
    )
    settings = Settings.from_environment(
        checkout,
        environment={
            "IMGFLOW_DVC_CACHE_DIR": str(tmp_path / "host-cache"),
            "IMGFLOW_S3_ENDPOINT": "http://10.0.0.1:8333",
        },
    )
    configure_worker_checkout(checkout, settings)
    local = (checkout / ".dvc" / "config.local").read_text()
    assert f"dir = {tmp_path / 'host-cache'}" in local
    assert "endpointurl = http://10.0.0.1:8333" in local
    assert "10.0.0.1" not in (checkout / ".dvc" / "config").read_text()
