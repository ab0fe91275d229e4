"""Atomic writes for every pipeline output: a reader (or a killed stage) never sees half a file.

Each writer goes through a temporary file in the destination's folder and `os.replace`, which is
atomic on POSIX file systems; a folder is built complete under a hidden name and swapped in.
The temporary name keeps the destination's suffixes, so libraries
that choose a format by extension (NumPy, Keras, pandas) write the right one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, on error it is gone."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".tmp-{uuid.uuid4().hex[:12]}.{path.name}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes(path: Path | str, data: bytes) -> Path:
    """Write bytes atomically."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text(path: Path | str, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(
    path: Path | str, data: Any, *, sort_keys: bool = True, indent: int = 2, allow_nan: bool = True
) -> Path:
    """Deterministic JSON (sorted keys, trailing newline), written atomically."""
    text = json.dumps(data, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan)
    return write_text(path, text + "\n")


def replace_dir(staging: Path, final: Path) -> Path:
    """Swap a complete folder `staging` in as `final` (same file system).

    The previous `final` is renamed aside first and deleted only after the swap, so at every
    moment `final` is either the whole old folder or the whole new one.
    """
    previous = final.with_name(f".{final.name}-previous")
    shutil.rmtree(previous, ignore_errors=True)
    if final.exists():
        final.rename(previous)
    staging.rename(final)
    shutil.rmtree(previous, ignore_errors=True)
    return final
