"""`imgflow rollback`: move `champion` back to the previous champion, or to a named version.

Who, when and why are recorded as tags on the version made champion. A version the gate rejected
is refused unless forced, so a rollback cannot silently serve a model that failed its checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tasks.registry import tags as tag
from tasks.registry.champion import (
    HISTORY_LIMIT,
    PromotionError,
    champion_history,
    current_champion,
    promotion_lock,
    registry_uri,
    set_champion,
)
from tasks.registry.gate import REJECTED, now
from tasks.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient


@dataclass(frozen=True)
class Rollback:
    name: str
    from_version: str | None
    to_version: str
    by: str
    at: str
    reason: str
    forced: bool


def _previous(name: str, current: str | None, history: list[str]) -> tuple[str, list[str]]:
    """The champion before `current`, and the history with `current` dropped from its end, so a
    second rollback goes further back."""
    earlier = history[: len(history) - 1] if history and history[-1] == current else history
    candidates = [version for version in reversed(earlier) if version != current]
    if not candidates:
        raise PromotionError(
            f"{name}: no previous champion to roll back to; name one with --version"
        )
    target = candidates[0]
    return target, earlier[: len(earlier) - earlier[::-1].index(target)]


def _check_target(
    client: MlflowClient, name: str, target: str, current: str | None, force: bool
) -> None:
    """The target exists, is not already champion, and was not rejected (unless forced)."""
    from mlflow.exceptions import MlflowException

    try:
        target_version = client.get_model_version(name, target)
    except MlflowException as error:
        raise PromotionError(f"{name} has no version {target}") from error
    if target == current:
        raise PromotionError(f"{name} v{target} is already the champion")
    if target_version.tags.get(tag.GATE_DECISION) == REJECTED and not force:
        raise PromotionError(
            f"{name} v{target} was rejected by the gate "
            f"({target_version.tags.get(tag.GATE_REASON, 'no reason recorded')}); "
            "pass --force to make it champion anyway"
        )


def rollback(
    client: MlflowClient,
    name: str,
    *,
    reason: str,
    version: str | None = None,
    force: bool = False,
    user: str | None = None,
) -> Rollback:
    """Move `champion` to `version`, or to the champion before the current one.

    Refuses a version the gate rejected unless `force`; records who/when/why on the version.
    """
    from mlflow.exceptions import MlflowException

    if not reason or not reason.strip():
        raise PromotionError("rollback needs a --reason (it is recorded on the version)")
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        raise PromotionError(f"no registered model named {name!r}") from error
    by = user or Settings.from_environment().user
    with promotion_lock(name, registry_uri(client)):
        current = current_champion(client, name)
        history = champion_history(client, name)
        if version is None:
            target, new_history = _previous(name, current, history)
        else:
            target, new_history = str(version), [*history, str(version)][-HISTORY_LIMIT:]
        _check_target(client, name, target, current, force)
        at = now()
        for key, value in {
            tag.ROLLBACK_BY: by,
            tag.ROLLBACK_AT: at,
            tag.ROLLBACK_REASON: reason.strip(),
            tag.ROLLBACK_FROM: current or tag.NONE,
            tag.ROLLBACK_FORCED: "true" if force else "false",
        }.items():
            client.set_model_version_tag(name, target, key, value)
        set_champion(client, name, target, new_history)
    return Rollback(name, current, target, by, at, reason.strip(), force)
