"""Atomic writes: the destination holds the old bytes or the new ones, never a partial file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.atomic import atomic_path, replace_dir, write_json, write_text


def test_write_json_is_deterministic_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "metrics.json"
    write_json(path, {"b": 1, "a": [1.5, None]})
    assert path.read_text() == '{\n  "a": [\n    1.5,\n    null\n  ],\n  "b": 1\n}\n'
    write_json(path, {"a": 2})
    assert path.read_text() == '{\n  "a": 2\n}\n'
    with pytest.raises(ValueError, match="Out of range float"):
        write_json(path, {"a": float("nan")}, allow_nan=False)
    assert path.read_text() == '{\n  "a": 2\n}\n'  # the failed write left the old file
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "splits.npz"
    write_text(path, "old")
    with pytest.raises(RuntimeError, match="killed"), atomic_path(path) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["splits.npz"]


def test_the_temporary_keeps_the_suffix_libraries_choose_formats_by(tmp_path: Path) -> None:
    path = tmp_path / "best.weights.h5"
    with atomic_path(path) as temporary:
        assert temporary.name.endswith(".best.weights.h5") and temporary.parent == tmp_path
        temporary.write_bytes(b"x")
    with atomic_path(tmp_path / "arrays.npz") as temporary:
        np.savez(temporary, x=np.arange(3))  # NumPy would append .npz to any other name
    assert np.load(tmp_path / "arrays.npz")["x"].tolist() == [0, 1, 2]


def test_replace_dir_swaps_a_whole_folder_and_leaves_no_backup(tmp_path: Path) -> None:
    final, staging = tmp_path / "data", tmp_path / ".staging"
    final.mkdir()
    (final / "old.png").write_bytes(b"old")
    staging.mkdir()
    (staging / "new.png").write_bytes(b"new")
    replace_dir(staging, final)
    assert [p.name for p in final.iterdir()] == ["new.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    fresh = tmp_path / ".fresh"
    fresh.mkdir()
    replace_dir(fresh, tmp_path / "models")  # no previous folder: a plain rename
    assert (tmp_path / "models").is_dir() and not fresh.exists()
