"""Where flows/cli.py imports the gate's error and rollback from; they live in tasks.registry
(`tasks.registry.champion.PromotionError`, `tasks.registry.rollback.rollback`)."""

from tasks.registry.champion import PromotionError
from tasks.registry.rollback import rollback

__all__ = ["PromotionError", "rollback"]
