"""The training budget: how many epochs a model trains on this dataset, its learning-rate warm-up
and schedule, and how patient early stopping is.

A budget counted in epochs gives a small dataset almost no optimiser steps (640 images at batch
64 are 10 steps an epoch), so each model can give its budget in optimiser steps
(`train.<model>.steps`): the epochs are then derived from the dataset size, with `epochs` as
the upper bound. The plan is a pure function of the params and the training-split size, so a
resumed run (same fingerprint) follows the same plan and the same learning-rate curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tasks.params import GANParams, ModelParams

# With a step budget, early stopping waits at least this share of the planned epochs: a small
# dataset's epochs are a few steps each, and a patience of 5 such epochs stops on noise.
PATIENCE_SHARE = 0.25
DECAY_FLOOR = 0.01  # the cosine decay ends at 1 % of the peak learning rate


@dataclass(frozen=True)
class Budget:
    """The training plan of one model on one dataset."""

    epochs: int
    steps_per_epoch: int
    warmup_steps: int
    patience: int | None  # epochs without improvement before stopping; None: no early stop

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def plan_budget(params: ModelParams, steps_per_epoch: int) -> Budget:
    """Epochs, warm-up and patience for `params` when an epoch is `steps_per_epoch` steps."""
    steps_per_epoch = max(1, steps_per_epoch)
    epochs = params.epochs
    if params.steps is not None:
        epochs = max(1, min(params.epochs, math.ceil(params.steps / steps_per_epoch)))
    total = epochs * steps_per_epoch
    warmup = 0 if isinstance(params, GANParams) else min(params.warmup_steps, total // 2)
    patience = None
    if not isinstance(params, GANParams):
        patience = params.early_stopping_patience
        if params.steps is not None:
            patience = max(patience, math.ceil(PATIENCE_SHARE * epochs))
    return Budget(epochs, steps_per_epoch, warmup, patience)


def learning_rate_schedule(peak: float, budget: Budget) -> Any:
    """Linear warm-up from 0 to `peak` over the warm-up steps, then cosine decay to 1 % of it
    over the remaining steps (a function of the optimiser's step count: resumable)."""
    import keras

    decay_steps = max(1, budget.total_steps - budget.warmup_steps)
    if budget.warmup_steps == 0:
        return keras.optimizers.schedules.CosineDecay(peak, decay_steps, alpha=DECAY_FLOOR)
    return keras.optimizers.schedules.CosineDecay(
        0.0,
        decay_steps,
        alpha=DECAY_FLOOR,
        warmup_target=peak,
        warmup_steps=budget.warmup_steps,
    )
