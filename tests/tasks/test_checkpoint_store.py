"""The shared copy of a training's checkpoint: whole epochs only, newest wins, bad URLs named."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.checkpoint_store import (
    CheckpointStoreError,
    DirectoryBlobs,
    SharedCheckpoint,
    blobs_from_url,
    shared_checkpoint,
)
from tasks.settings import Settings


def _checkpoint(folder: Path, epoch: int) -> Path:
    (folder / "backup").mkdir(parents=True, exist_ok=True)
    (folder / "backup" / "latest.weights.h5").write_bytes(b"weights-%d" % epoch)
    (folder / "history.json").write_text(f"[{epoch}]")
    (folder / "fingerprint.txt").write_text("local only")
    return folder


def test_download_gives_the_newest_whole_epoch_and_older_ones_are_dropped(tmp_path: Path):
    store = DirectoryBlobs(tmp_path / "store")
    shared = SharedCheckpoint(store, "cnn", "params+seed+data")
    source = tmp_path / "host-a"
    for epoch in (1, 2):
        shared.upload(_checkpoint(source, epoch), epoch)
    target = tmp_path / "host-b"
    assert shared.download(target) == 2
    assert (target / "backup" / "latest.weights.h5").read_bytes() == b"weights-2"
    assert (target / "history.json").read_text() == "[2]"
    assert not (target / "fingerprint.txt").exists()  # written from the fingerprint, not copied
    assert sorted(p.name for p in (tmp_path / "store" / shared.prefix).iterdir()) == [
        "epoch-2",
        "latest.json",
    ]


def test_another_fingerprint_sees_nothing_and_discard_empties_the_copy(tmp_path: Path):
    store = DirectoryBlobs(tmp_path / "store")
    shared = SharedCheckpoint(store, "cnn", "old params")
    shared.upload(_checkpoint(tmp_path / "a", 1), 1)
    assert SharedCheckpoint(store, "cnn", "new params").download(tmp_path / "b") is None
    assert SharedCheckpoint(store, "rnn", "old params").download(tmp_path / "c") is None
    shared.discard()
    assert shared.download(tmp_path / "d") is None


def test_no_url_means_no_shared_copy_and_a_bad_url_is_named(tmp_path: Path):
    assert shared_checkpoint("cnn", "x", Settings.from_environment(environment={})) is None
    settings = Settings.from_environment(environment={"IMGFLOW_CHECKPOINT_URL": "ftp://x/y"})
    with pytest.raises(CheckpointStoreError, match="IMGFLOW_CHECKPOINT_URL='ftp://x/y'"):
        shared_checkpoint("cnn", "x", settings)
    assert isinstance(blobs_from_url(tmp_path.as_uri(), settings), DirectoryBlobs)
