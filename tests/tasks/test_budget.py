"""The training budget (issue 15): epochs derived from a budget in optimiser steps, warm-up, the
learning-rate curve, and early-stopping patience that fits short epochs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.budget import Budget, learning_rate_schedule, plan_budget
from tasks.params import CNNParams, GANParams, ParamsError, parse_section

CNN = CNNParams(
    epochs=200,
    steps=2000,
    warmup_steps=100,
    batch_size=64,
    optimizer="adam",
    learning_rate=0.003,
    filters=[8],
    dense_units=8,
    dropout=0.1,
    early_stopping_patience=5,
)


@pytest.mark.parametrize(
    ("steps_per_epoch", "epochs", "patience"),
    [(125, 16, 5), (10, 200, 50), (3, 200, 50)],  # MNIST-10k; 640 images; capped by `epochs`
)
def test_epochs_follow_the_dataset_size(steps_per_epoch: int, epochs: int, patience: int) -> None:
    budget = plan_budget(CNN, steps_per_epoch)
    assert budget == Budget(epochs, steps_per_epoch, 100, patience)


def test_without_steps_the_epochs_and_patience_are_the_params() -> None:
    budget = plan_budget(CNN.model_copy(update={"steps": None, "epochs": 15}), 10)
    assert (budget.epochs, budget.patience, budget.total_steps) == (15, 5, 150)
    gan = GANParams(
        epochs=300,
        steps=3200,
        batch_size=64,
        latent_dim=8,
        generator_learning_rate=1e-4,
        discriminator_learning_rate=1e-4,
    )
    assert plan_budget(gan, 125) == Budget(26, 125, 0, None)  # no warm-up, no early stop


def test_warm_up_then_cosine_decay_to_one_percent() -> None:
    schedule = learning_rate_schedule(0.003, plan_budget(CNN, 10))
    rates = [float(schedule(step)) for step in (0, 50, 100, 1050, 2000, 4000)]
    assert rates[0] == 0.0 and rates[1] == pytest.approx(0.0015)
    assert rates[2] == pytest.approx(0.003)  # the peak at the end of the warm-up
    assert rates[3] == pytest.approx(0.003 * (0.01 + 0.99 * 0.5), rel=1e-3)  # half-way
    assert rates[4] == rates[5] == pytest.approx(0.00003)
    short = plan_budget(CNN.model_copy(update={"steps": 40}), 10)
    assert short.warmup_steps == 20  # never more than half the budget


def test_steps_must_be_positive() -> None:
    with pytest.raises(ParamsError, match=r"train\.cnn\.steps: .*greater than 0"):
        parse_section(CNNParams, CNN.model_dump() | {"steps": 0}, "train.cnn")


def test_a_step_budget_trains_the_derived_epochs(prepared_repo: Path, tiny_train_params) -> None:
    from tasks.train import train

    # Digits: 1,439 training images, 23 batches of 64: a 46-step budget is 2 epochs of the 50.
    params = tiny_train_params(epochs=50, steps=46, warmup_steps=10)
    result = train("cnn", prepared_repo, params, 42)
    assert result.epochs_run == 2 and len(result.history["loss"]) == 2
