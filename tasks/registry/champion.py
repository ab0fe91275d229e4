"""The `champion` alias of a registered model: who holds it, its history, and the lock that
serialises every change to it.

The lock is tasks.locks.model_lock: an flock next to a sqlite store (or in the temp dir for a
remote store: host-local), or, with IMGFLOW_LOCK_URL set, a PostgreSQL advisory lock that holds
across hosts. It waits at most IMGFLOW_LOCK_TIMEOUT seconds.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

from tasks.locks import model_lock
from tasks.registry import tags as tag
from tasks.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

HISTORY_LIMIT = 50  # champion versions kept in the history tag


class PromotionError(ValueError):
    """A gate or rollback input is invalid, or the registry refused the change."""


@contextlib.contextmanager
def promotion_lock(name: str, tracking_uri: str) -> Iterator[None]:
    """Hold the exclusive lock of one registered model (its versions and aliases) in one store.

    Raises tasks.locks.LockError when it cannot be taken in time or the lock database is
    unreachable; nothing has been changed then.
    """
    with model_lock(Settings.from_environment(), tracking_uri, name):
        yield


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
