"""Train resumes after SIGKILL: a real `python -m tasks.train` process is killed after its first
checkpoint, and the restarted run continues from the last completed epoch."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tasks.paths import CHECKPOINTS_DIR, MODELS_DIR

EPOCHS = 12


def _prepare(repo: Path, model: str) -> None:
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["train"][model]["epochs"] = EPOCHS
    if model == "cnn":
        params["train"]["cnn"]["early_stopping_patience"] = EPOCHS  # run every epoch
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run([sys.executable, "-m", "tasks.prepare"], check=True, capture_output=True)


def _completed_epochs(history_file: Path) -> int:
    try:
        return len(json.loads(history_file.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def _kill_after_first_checkpoint(model: str, store: Path | None = None) -> int:
    """Start a training process, SIGKILL it once an epoch is checkpointed (and, with `store`,
    copied to that shared store); return the count of completed epochs."""
    checkpoint = Path(CHECKPOINTS_DIR) / model
    process = subprocess.Popen(
        [sys.executable, "-m", "tasks.train", model],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            # The backup of epoch k is written right after its history entry.
            checkpointed = _completed_epochs(checkpoint / "history.json") >= 1 and any(
                (checkpoint / "backup").glob("*")
            )
            shared = store is None or any(store.glob(f"{model}/*/latest.json"))
            if checkpointed and shared:
                break
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, "training finished before it could be killed"
    assert not (Path(MODELS_DIR) / model / "train.json").exists()
    return _completed_epochs(checkpoint / "history.json")


@pytest.mark.parametrize("model", ["cnn", pytest.param("gan", marks=pytest.mark.slow)])
def test_killed_training_resumes_from_its_last_completed_epoch(repo_copy: Path, model: str):
    _prepare(repo_copy, model)
    completed = _kill_after_first_checkpoint(model)
    assert 1 <= completed < EPOCHS

    restarted = subprocess.run(
        [sys.executable, "-m", "tasks.train", model], capture_output=True, text=True, check=False
    )
    assert restarted.returncode == 0, restarted.stderr
    epoch_lines = [line for line in restarted.stdout.splitlines() if line.startswith(f"[{model}]")]
    # The restarted process trains only the epochs the killed one had not completed ...
    first_epoch = int(epoch_lines[0].split()[2].split("/")[0])
    assert completed <= first_epoch <= completed + 1
    assert len(epoch_lines) == EPOCHS - first_epoch + 1
    # ... and its record counts every epoch, those before the kill included.
    record = json.loads((Path(MODELS_DIR) / model / "train.json").read_text())
    assert record["epochs_run"] == EPOCHS
    assert record["resumed_at_epoch"] == first_epoch - 1
    assert all(len(values) == EPOCHS for values in record["history"].values())
    assert 1 <= record["best_epoch"] <= EPOCHS
    assert not (Path(CHECKPOINTS_DIR) / model).exists()
    model_file = "model.keras" if model == "cnn" else "generator.keras"
    assert (Path(MODELS_DIR) / model / model_file).is_file()


def test_killed_training_resumes_on_another_host_from_the_shared_checkpoint(
    repo_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A preempted worker's checkout is gone with it: the retry on another host starts with no
    local checkpoint and resumes from the copy in the shared store (IMGFLOW_CHECKPOINT_URL)."""
    store = tmp_path / "shared-store"
    monkeypatch.setenv("IMGFLOW_CHECKPOINT_URL", store.as_uri())
    _prepare(repo_copy, "cnn")
    completed = _kill_after_first_checkpoint("cnn", store)
    shared = list(store.glob("cnn/*/latest.json"))
    assert len(shared) == 1
    uploaded = json.loads(shared[0].read_text())["epoch"]
    assert 1 <= uploaded <= completed
    # The other host: the same commit and prepared data, no local checkpoint at all.
    other = tmp_path / "other-host"
    shutil.copytree(repo_copy, other, ignore=shutil.ignore_patterns("checkpoints"))
    assert not (other / CHECKPOINTS_DIR).exists()
    restarted = subprocess.run(
        [sys.executable, "-m", "tasks.train", "cnn"],
        cwd=other,
        env={**os.environ, "PYTHONPATH": str(other)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert restarted.returncode == 0, restarted.stderr
    assert f"resuming from the shared checkpoint of epoch {uploaded}" in restarted.stderr
    record = json.loads((other / MODELS_DIR / "cnn" / "train.json").read_text())
    assert record["resumed_at_epoch"] == uploaded  # epochs counted across the kill
    assert record["epochs_run"] == EPOCHS
    assert all(len(values) == EPOCHS for values in record["history"].values())
    assert not any(store.rglob("*.json")), "the finished training's shared copy is discarded"


def test_restore_only_checkout_refuses_to_train(repo_copy: Path, monkeypatch: pytest.MonkeyPatch):
    """A scheduler restoring a worker's training from DVC's run-cache never trains it itself."""
    _prepare(repo_copy, "cnn")
    monkeypatch.setenv("IMGFLOW_RESTORE_ONLY", "1")
    refused = subprocess.run(
        [sys.executable, "-m", "tasks.train", "cnn"], capture_output=True, text=True, check=False
    )
    assert refused.returncode == 1
    assert "not trained here (IMGFLOW_RESTORE_ONLY is set)" in refused.stderr
    assert not (Path(MODELS_DIR) / "cnn").exists()
    assert not (Path(CHECKPOINTS_DIR) / "cnn").exists()
