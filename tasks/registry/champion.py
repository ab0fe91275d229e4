"""The `champion` alias of a registered model: who holds it, its history, and the lock that
serialises every change to it.

The lock is a file next to a sqlite store, or in the temp dir for a remote store (host-local
there: the gate's compare-and-set re-read still catches most races). It is an flock, held per
open file, so it also excludes threads of one process.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.registry import tags as tag

if TYPE_CHECKING:
    from mlflow import MlflowClient

HISTORY_LIMIT = 50  # champion versions kept in the history tag
SQLITE_PREFIX = "sqlite:///"


class PromotionError(ValueError):
    """A gate or rollback input is invalid, or the registry refused the change."""


def lock_file(name: str, tracking_uri: str) -> Path:
    """The lock file serialising alias changes of one registered model in one store."""
    if tracking_uri.startswith(SQLITE_PREFIX):
        store = Path(tracking_uri.removeprefix(SQLITE_PREFIX)).resolve()
        folder = store.parent / ".imgflow-locks"
    else:
        digest = hashlib.sha256(tracking_uri.encode()).hexdigest()[:12]
        folder = Path(tempfile.gettempdir()) / "imgflow-locks" / digest
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return folder / f"{safe}.lock"


@contextlib.contextmanager
def promotion_lock(name: str, tracking_uri: str) -> Iterator[None]:
    """Hold the exclusive lock of one registered model's aliases."""
    path = lock_file(name, tracking_uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def registry_uri(client: MlflowClient) -> str:
    """The store a client writes aliases to (the lock is per store)."""
    return str(client._registry_uri or client.tracking_uri)


def current_champion(client: MlflowClient, name: str) -> str | None:
    """The version `champion` points at, or None (no alias, or no registered model)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, tag.CHAMPION).version)
    except MlflowException:
        return None


def champion_history(client: MlflowClient, name: str) -> list[str]:
    """The versions that were champion, oldest first (an unreadable tag reads as empty)."""
    tags = client.get_registered_model(name).tags
    try:
        history = json.loads(tags.get(tag.CHAMPION_HISTORY, "[]"))
    except json.JSONDecodeError:
        return []
    return [str(version) for version in history] if isinstance(history, list) else []


def set_champion(client: MlflowClient, name: str, version: str, history: list[str]) -> None:
    """Point `champion` at `version` and record `history` (caller holds the lock)."""
    client.set_registered_model_alias(name, tag.CHAMPION, version)
    client.set_registered_model_tag(name, tag.CHAMPION_HISTORY, json.dumps(history))


def move_champion(client: MlflowClient, name: str, version: str) -> None:
    """Promote `version`: champion moves to it and it joins the history (caller holds the lock)."""
    history = [*champion_history(client, name), version][-HISTORY_LIMIT:]
    set_champion(client, name, version, history)
