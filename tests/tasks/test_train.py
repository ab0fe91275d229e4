"""Train: typed params checked before any training, the architecture checked against the data,
checkpoints tied to the data's content, deterministic and class-weighted training, GPU paths."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.params import CNNParams, GANParams, ParamsError, RNNParams, TrainParams, parse_section
from tasks.prepare import prepare
from tasks.train import (
    FINGERPRINT_FILE,
    build_model,
    check_image_shape,
    checkpoint_fingerprint,
    open_checkpoint,
)

REPO_TRAIN: dict[str, Any] = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "params.yaml").read_text()
)["train"]
CNN = CNNParams(
    epochs=2,
    batch_size=32,
    optimizer="adam",
    learning_rate=0.001,
    filters=[8, 16],
    dense_units=16,
    dropout=0.2,
)
RNN = RNNParams(
    epochs=2, batch_size=32, optimizer="adam", learning_rate=0.001, lstm_units=[8], dropout=0.2
)
GAN = GANParams(
    epochs=2,
    batch_size=32,
    latent_dim=8,
    generator_learning_rate=0.0002,
    discriminator_learning_rate=0.0002,
    base_filters=4,
)


def _train_section(model: str, change: dict[str, Any], drop: str | None = None) -> dict:
    section = json.loads(json.dumps(REPO_TRAIN))
    section[model].update(change)
    if drop:
        del section[model][drop]
    return section


@pytest.mark.parametrize(
    ("model", "change", "message"),
    [
        ("cnn", {"epochs": -1}, r"train\.cnn\.epochs: Input should be greater than 0, got -1"),
        ("cnn", {"epochs": 1.5}, r"train\.cnn\.epochs: .*got 1\.5"),
        ("cnn", {"batch_size": 0}, r"train\.cnn\.batch_size: Input should be greater than 0"),
        ("cnn", {"optimizer": "adamax9"}, r"train\.cnn\.optimizer: .*'adam'.*got 'adamax9'"),
        ("cnn", {"dropout": 1.0}, r"train\.cnn\.dropout: Input should be less than 1"),
        ("cnn", {"filters": []}, r"train\.cnn\.filters: "),
        ("cnn", {"augment": "yes"}, r"train\.cnn\.augment: "),
        ("cnn", {"early_stopping_patience": 0}, r"train\.cnn\.early_stopping_patience: "),
        ("cnn", {"fliters": [8]}, r"train\.cnn\.fliters is not a known key; allowed: epochs"),
        ("rnn", {"lstm_units": [8, -1]}, r"train\.rnn: lstm_units must be positive integers"),
        ("rnn", {"bidirectional": 1}, r"train\.rnn\.bidirectional: "),
        ("gan", {"epochs": -3}, r"train\.gan\.epochs: Input should be greater than 0"),
        ("gan", {"latent_dim": 0}, r"train\.gan\.latent_dim: "),
        ("gan", {"beta_1": 1.0}, r"train\.gan\.beta_1: Input should be less than 1"),
        ("gan", {"label_smoothing": 0.5}, r"train\.gan\.label_smoothing: "),
        ("gan", {"class_loss_weight": -1.0}, r"train\.gan\.class_loss_weight: "),
        ("gan", {"sample_every": 0}, r"train\.gan\.sample_every: "),
    ],
)
def test_bad_params_of_every_model_fail_naming_the_key(model, change, message) -> None:
    with pytest.raises(ParamsError, match=message):
        parse_section(TrainParams, _train_section(model, change), "train")


def test_missing_key_is_named() -> None:
    section = _train_section("cnn", {}, drop="learning_rate")
    with pytest.raises(ParamsError, match=r"train\.cnn\.learning_rate is missing"):
        parse_section(TrainParams, section, "train")


def test_the_repository_params_parse_into_each_models_section() -> None:
    params = parse_section(TrainParams, REPO_TRAIN, "train")
    assert isinstance(params.model("cnn"), CNNParams)
    assert params.model("rnn").lstm_units == REPO_TRAIN["rnn"]["lstm_units"]
    assert params.model("gan").sample_every == REPO_TRAIN["gan"]["sample_every"]


def test_image_too_small_for_the_cnn_pooling_blocks() -> None:
    four_blocks = CNN.model_copy(update={"filters": [8, 8, 8, 8]})
    with pytest.raises(ParamsError, match=r"train\.cnn\.filters has 4 pooling blocks.*at most 3"):
        check_image_shape(four_blocks, (8, 8, 1))
    check_image_shape(CNN.model_copy(update={"filters": [8, 8, 8]}), (8, 8, 1))


def test_gan_and_rnn_take_any_size() -> None:
    check_image_shape(GAN, (10, 12, 1))  # the generator crops sizes not divisible by 4
    check_image_shape(GAN, (8, 12, 1))
    check_image_shape(RNN, (10, 10, 1))  # the RNN reads rows of any size


def test_bad_params_fail_before_any_training(prepared_repo: Path, capsys) -> None:
    """The CLI exits 1 naming the key, and writes no model, checkpoint or history."""
    from tasks.train import main

    params = yaml.safe_load((prepared_repo / "params.yaml").read_text())
    params["train"]["cnn"]["optimizer"] = "adamax9"
    (prepared_repo / "params.yaml").write_text(yaml.safe_dump(params))
    assert main(["cnn"]) == 1
    assert "train.cnn.optimizer" in capsys.readouterr().err
    assert not (prepared_repo / "artifacts/models").exists()
    assert not (prepared_repo / "artifacts/checkpoints").exists()
    assert not (prepared_repo / "plots").exists()


def test_checkpoint_is_discarded_when_the_data_changes_at_the_same_size(
    digits_data: Path, prepare_params
) -> None:
    """The fingerprint hashes the splits' bytes: a same-size re-split is different data."""
    root = digits_data.parent
    first, second = root / "a" / "splits.npz", root / "b" / "splits.npz"
    prepare(digits_data, first, root / "a" / "meta.json", prepare_params, seed=1)
    prepare(digits_data, second, root / "b" / "meta.json", prepare_params, seed=2)
    assert first.stat().st_size == second.stat().st_size
    assert first.read_bytes() != second.read_bytes()

    original = checkpoint_fingerprint(CNN, 42, False, first)
    directory = open_checkpoint("cnn", root, original)
    (directory / "history.json").write_text("[{}]")  # stands for an epoch's checkpoint
    assert open_checkpoint("cnn", root, checkpoint_fingerprint(CNN, 42, False, first)) == directory
    assert (directory / "history.json").is_file(), "same data, params and seed: resume"

    changed = checkpoint_fingerprint(CNN, 42, False, second)
    assert changed != original
    open_checkpoint("cnn", root, changed)
    assert not (directory / "history.json").exists(), "new data: start over"
    assert (directory / FINGERPRINT_FILE).read_text() == changed


@pytest.mark.parametrize(
    "change",
    [{"params": CNN.model_copy(update={"epochs": 3})}, {"seed": 7}, {"deterministic": True}],
)
def test_checkpoint_fingerprint_changes_with_params_seed_and_determinism(
    tmp_path: Path, change: dict
) -> None:
    splits = tmp_path / "splits.npz"
    splits.write_bytes(b"prepared")
    base = {"params": CNN, "seed": 42, "deterministic": False}
    changed = base | change
    assert checkpoint_fingerprint(splits_file=splits, **base) != checkpoint_fingerprint(
        splits_file=splits, **changed
    )


def _history_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def test_two_deterministic_runs_give_identical_metrics(prepared_repo: Path, tiny_train_params):
    from tasks.evaluate import evaluate
    from tasks.params import EvaluateParams, load_section
    from tasks.train import train

    params = tiny_train_params(augment=True)
    evaluate_params = load_section(EvaluateParams, "evaluate")
    runs = []
    for _ in range(2):
        result = train("cnn", prepared_repo, params, 42)
        evaluate("cnn", prepared_repo, evaluate_params, 42)
        record = json.loads((prepared_repo / "artifacts/models/cnn/train.json").read_text())
        metrics = (prepared_repo / "metrics/cnn.json").read_bytes()
        runs.append((result.history, record["history"], metrics))
    assert runs[0] == runs[1]
    assert record["params"] == params.cnn.model_dump(mode="json")
    assert record["epochs_run"] == 2 and not (prepared_repo / "artifacts/checkpoints/cnn").exists()
    rows = _history_csv(prepared_repo / "plots/history/cnn.csv")
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert rows[2] == ["2", *(f"{result.history[k][1]:.6f}" for k in rows[0][1:])]


def test_class_weights_from_validation_are_applied_and_recorded(
    prepared_repo: Path, tiny_train_params
) -> None:
    from tasks.paths import VALIDATION_METRICS
    from tasks.train import train

    params = tiny_train_params(epochs=1)
    weights = {str(label): (5.0 if label == 0 else 0.5) for label in range(10)}
    validation = prepared_repo / VALIDATION_METRICS
    validation.parent.mkdir(parents=True, exist_ok=True)

    validation.write_text(json.dumps({"apply_class_weights": False, "class_weights": weights}))
    plain = train("cnn", prepared_repo, params, 42)
    validation.write_text(json.dumps({"apply_class_weights": True, "class_weights": weights}))
    weighted = train("cnn", prepared_repo, params, 42)

    assert plain.class_weights is None
    assert weighted.class_weights == weights
    record = json.loads((prepared_repo / "artifacts/models/cnn/train.json").read_text())
    assert record["class_weights"] == weights
    # Same seed and data: only the weighting changes the loss.
    assert weighted.history["loss"] != plain.history["loss"]


def test_precision_and_strategy_follow_the_visible_gpus() -> None:
    import tensorflow as tf

    from tasks.train import distribution_strategy, precision_policy

    assert precision_policy(0) == "float32"
    assert precision_policy(1) == precision_policy(4) == "mixed_float16"
    assert not isinstance(distribution_strategy(1), tf.distribute.MirroredStrategy)
    mirrored = distribution_strategy(2, devices=["/cpu:0"])
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)


@pytest.mark.parametrize(
    "params",
    [
        CNN.model_copy(update={"augment": True}),
        RNN.model_copy(update={"bidirectional": True}),
        GAN,
    ],
    ids=["cnn", "rnn", "gan"],
)
def test_mixed_precision_models_build_and_train_one_step_under_mirrored_strategy(params) -> None:
    """The GPU code path (mixed_float16 + MirroredStrategy), exercised on the CPU."""
    import keras
    import numpy as np

    from tasks.train import compile_model, distribution_strategy, make_dataset

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(32, 8, 8, 1), dtype=np.uint8)
    labels = np.arange(32) % 10
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        strategy = distribution_strategy(2, devices=["/cpu:0"])
        with strategy.scope():
            network = build_model(params, (8, 8, 1), 10, seed=0)
            compile_model(network, params, steps_per_epoch=1)
        history = network.fit(make_dataset(images, labels, 32), epochs=1, verbose=0).history
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(np.isfinite(values[0]) for values in history.values())


def test_each_section_builds_its_model() -> None:
    from models.gan import ConditionalGAN

    assert build_model(CNN, (8, 8, 1), 10).name == "cnn"
    assert build_model(RNN, (8, 8, 1), 10).name == "rnn"
    gan = build_model(GAN, (8, 8, 1), 10, seed=0)
    assert isinstance(gan, ConditionalGAN) and gan.latent_dim == GAN.latent_dim


def test_rnn_unrolls_on_cpu_only() -> None:
    """train.rnn.unroll speeds up CPU training; on a GPU the looped cuDNN kernel is faster."""
    params = RNN.model_copy(update={"lstm_units": [4], "unroll": True})
    on_cpu = build_model(params, (8, 8, 1), 10, gpu_count=0)
    on_gpu = build_model(params, (8, 8, 1), 10, gpu_count=1)
    assert on_cpu.get_layer("lstm1").unroll is True
    assert on_gpu.get_layer("lstm1").unroll is False
