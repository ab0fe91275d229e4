"""Train: params are checked before any training, naming the params.yaml key."""

from __future__ import annotations

import pytest

from tasks.params import ParamsError
from tasks.train import build_model, check_image_shape, check_train_params

CNN = {
    "epochs": 2,
    "batch_size": 32,
    "optimizer": "adam",
    "learning_rate": 0.001,
    "filters": [8, 16],
    "dense_units": 16,
    "dropout": 0.2,
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": -1}, r"train\.cnn\.epochs must be positive"),
        ({"epochs": 1.5}, r"train\.cnn\.epochs must be"),
        ({"optimizer": "adamax9"}, r"train\.cnn\.optimizer 'adamax9' is unknown"),
        ({"dropout": 1.0}, r"train\.cnn\.dropout"),
        ({"filters": []}, r"train\.cnn\.filters"),
    ],
)
def test_bad_cnn_params_fail_naming_the_key(change: dict, message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        check_train_params("cnn", CNN | change)


def test_missing_key_is_named() -> None:
    params = dict(CNN)
    del params["learning_rate"]
    with pytest.raises(ParamsError, match=r"train\.cnn\.learning_rate is missing"):
        check_train_params("cnn", params)


def test_image_too_small_for_the_cnn_pooling_blocks() -> None:
    with pytest.raises(ParamsError, match=r"train\.cnn\.filters has 4 pooling blocks"):
        check_image_shape("cnn", CNN | {"filters": [8, 8, 8, 8]}, (8, 8, 1))
    check_image_shape("cnn", CNN, (8, 8, 1))


def test_gan_needs_sizes_divisible_by_four() -> None:
    with pytest.raises(ParamsError, match=r"train\.gan needs image height and width"):
        check_image_shape("gan", {}, (10, 10, 1))


GAN = {
    "epochs": 2,
    "batch_size": 32,
    "latent_dim": 8,
    "generator_learning_rate": 0.0002,
    "discriminator_learning_rate": 0.0002,
}


@pytest.mark.parametrize(
    ("model", "base", "change", "message"),
    [
        ("cnn", CNN, {"batch_size": 0}, r"train\.cnn\.batch_size must be positive"),
        ("cnn", CNN, {"augment": "yes"}, r"train\.cnn\.augment must be"),
        ("cnn", CNN, {"early_stopping_patience": 0}, r"train\.cnn\.early_stopping_patience"),
        ("rnn", {**CNN, "lstm_units": [8]}, {"lstm_units": [8, -1]}, r"train\.rnn\.lstm_units"),
        ("rnn", {**CNN, "lstm_units": [8]}, {"bidirectional": 1}, r"train\.rnn\.bidirectional"),
        ("gan", GAN, {"epochs": -3}, r"train\.gan\.epochs must be positive"),
        ("gan", GAN, {"latent_dim": 0}, r"train\.gan\.latent_dim"),
        ("gan", GAN, {"beta_1": 1.0}, r"train\.gan\.beta_1"),
        ("gan", GAN, {"label_smoothing": 0.5}, r"train\.gan\.label_smoothing"),
        ("gan", GAN, {"class_loss_weight": -1}, r"train\.gan\.class_loss_weight"),
        ("gan", GAN, {"sample_every": 0}, r"train\.gan\.sample_every"),
    ],
)
def test_bad_params_of_every_model_fail_naming_the_key(model, base, change, message) -> None:
    with pytest.raises(ParamsError, match=message):
        check_train_params(model, base | change)


def test_bad_params_fail_before_any_training(repo_copy) -> None:
    """The CLI exits 1 naming the key, and writes no model, checkpoint or history."""
    import yaml

    from tasks.prepare import prepare as prepare_splits
    from tasks.train import main

    _prepare(repo_copy, prepare_splits)
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["train"]["cnn"]["optimizer"] = "adamax9"
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params))
    assert main(["cnn"]) == 1
    assert not (repo_copy / "artifacts/models").exists()
    assert not (repo_copy / "artifacts/checkpoints").exists()


def _prepare(repo, prepare_splits) -> None:
    import yaml

    from tasks.paths import DATA_DIR, PREPARED_META_FILE, SPLITS_FILE

    params = yaml.safe_load((repo / "params.yaml").read_text())
    (repo / SPLITS_FILE).parent.mkdir(parents=True, exist_ok=True)
    prepare_splits(
        repo / DATA_DIR, repo / SPLITS_FILE, repo / PREPARED_META_FILE, params["prepare"], 42
    )


def _tiny(repo, **cnn) -> dict:
    import yaml

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["deterministic"] = True
    params["train"]["cnn"].update({"epochs": 2, "filters": [4], "dense_units": 8} | cnn)
    return params


def test_two_deterministic_runs_give_identical_metrics(repo_copy) -> None:
    import json

    from tasks.evaluate import evaluate
    from tasks.prepare import prepare as prepare_splits
    from tasks.train import train

    _prepare(repo_copy, prepare_splits)
    params = _tiny(repo_copy, augment=True)
    runs = []
    for _ in range(2):
        result = train("cnn", repo_copy, params)
        metrics = evaluate("cnn", repo_copy, params)
        record = json.loads((repo_copy / "artifacts/models/cnn/train.json").read_text())
        runs.append((result.history, record["history"], metrics))
    assert runs[0] == runs[1]
    assert runs[0][0]["loss"][0] > 0


def test_class_weights_from_validation_are_applied_and_recorded(repo_copy) -> None:
    import json

    from tasks.paths import VALIDATION_METRICS
    from tasks.prepare import prepare as prepare_splits
    from tasks.train import train

    _prepare(repo_copy, prepare_splits)
    params = _tiny(repo_copy, epochs=1)
    weights = {str(label): (5.0 if label == 0 else 0.5) for label in range(10)}
    validation = repo_copy / VALIDATION_METRICS
    validation.parent.mkdir(parents=True, exist_ok=True)

    validation.write_text(json.dumps({"apply_class_weights": False, "class_weights": weights}))
    plain = train("cnn", repo_copy, params)
    validation.write_text(json.dumps({"apply_class_weights": True, "class_weights": weights}))
    weighted = train("cnn", repo_copy, params)

    assert plain.class_weights is None
    assert weighted.class_weights == weights
    record = json.loads((repo_copy / "artifacts/models/cnn/train.json").read_text())
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


@pytest.mark.parametrize("model", ["cnn", "rnn", "gan"])
def test_mixed_precision_models_build_and_train_one_step_under_mirrored_strategy(model) -> None:
    """The GPU code path (mixed_float16 + MirroredStrategy), exercised on the CPU."""
    import keras
    import numpy as np

    from tasks.train import compile_model, distribution_strategy, make_dataset

    params = {
        "cnn": CNN | {"augment": True},
        "rnn": {**CNN, "lstm_units": [8], "bidirectional": True},
        "gan": GAN | {"base_filters": 4},
    }[model]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(32, 8, 8, 1), dtype=np.uint8)
    labels = np.arange(32) % 10
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        strategy = distribution_strategy(2, devices=["/cpu:0"])
        with strategy.scope():
            network = build_model(model, params, (8, 8, 1), 10, seed=0)
            compile_model(model, network, params, steps_per_epoch=1)
        history = network.fit(make_dataset(images, labels, 32), epochs=1, verbose=0).history
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(np.isfinite(values[0]) for values in history.values())


def test_rnn_unrolls_on_cpu_only() -> None:
    """train.rnn.unroll speeds up CPU training; on a GPU the looped cuDNN kernel is faster."""
    params = {**CNN, "lstm_units": [4], "unroll": True}
    on_cpu = build_model("rnn", params, (8, 8, 1), 10, gpu_count=0)
    on_gpu = build_model("rnn", params, (8, 8, 1), 10, gpu_count=1)
    assert on_cpu.get_layer("lstm1").unroll is True
    assert on_gpu.get_layer("lstm1").unroll is False
