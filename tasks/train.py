"""Train: fit one model (cnn, rnn or gan) on the prepared splits and save it atomically.

One code path for every machine: the distribution strategy and precision policy are chosen from
the devices TensorFlow sees (mixed precision on GPUs only, MirroredStrategy on several). A
checkpoint is kept each epoch, so a killed run resumes from its last completed epoch.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tasks.params import ParamsError, load_params, section
from tasks.paths import (
    CLASSIFIERS,
    MODEL_NAMES,
    PARAMS_FILE,
    PREPARED_META_FILE,
    SPLITS_FILE,
    VALIDATION_METRICS,
    history_plot_file,
    model_dir,
)

logger = logging.getLogger("imgflow.train")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out

OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "sgd", "rmsprop")
CHECKPOINTS_DIR = Path("artifacts/checkpoints")

_CLASSIFIER_KEYS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "cnn": {"filters": list, "dense_units": int, "dropout": (int, float)},
    "rnn": {"lstm_units": list, "dropout": (int, float)},
}
_COMMON_KEYS: dict[str, type | tuple[type, ...]] = {"epochs": int, "batch_size": int}


@dataclass
class TrainResult:
    """What a training run did; saved as train.json next to the model and logged to MLflow."""

    model: str
    params: dict[str, Any]
    epochs_run: int
    best_epoch: int
    train_seconds: float
    images_per_second: float
    class_weights: dict[str, float] | None
    devices: list[str]
    precision_policy: str
    history: dict[str, list[float]] = field(default_factory=dict)


def check_train_params(model: str, params: dict[str, Any]) -> None:
    """Reject bad hyperparameters before any training starts, naming the params.yaml key."""
    if model not in MODEL_NAMES:
        raise ParamsError(f"unknown model '{model}'; choose one of {', '.join(MODEL_NAMES)}")
    prefix = f"params.yaml: train.{model}"
    expected = dict(_COMMON_KEYS) | _CLASSIFIER_KEYS.get(model, {})
    if model in CLASSIFIERS:
        expected |= {"learning_rate": (int, float), "optimizer": str}
    else:
        expected |= {
            "latent_dim": int,
            "generator_learning_rate": (int, float),
            "discriminator_learning_rate": (int, float),
        }
    for key, kind in expected.items():
        if key not in params:
            raise ParamsError(f"{prefix}.{key} is missing")
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ParamsError(f"{prefix}.{key} must be {kind}, got {value!r}")
        if isinstance(value, int | float) and key != "dropout" and value <= 0:
            raise ParamsError(f"{prefix}.{key} must be positive, got {value!r}")
    if "dropout" in params and not 0 <= params["dropout"] < 1:
        raise ParamsError(f"{prefix}.dropout must be in [0, 1), got {params['dropout']!r}")
    if model in CLASSIFIERS and params["optimizer"] not in OPTIMIZERS:
        raise ParamsError(
            f"{prefix}.optimizer '{params['optimizer']}' is unknown; use one of {OPTIMIZERS}"
        )
    for key in ("filters", "lstm_units"):
        values = params.get(key)
        if values is not None and (
            not values or not all(isinstance(v, int) and v > 0 for v in values)
        ):
            raise ParamsError(f"{prefix}.{key} must be a non-empty list of positive integers")


def check_image_shape(model: str, params: dict[str, Any], image_shape: Sequence[int]) -> None:
    """Fail early when the architecture cannot take this image size."""
    height, width = int(image_shape[0]), int(image_shape[1])
    if model == "cnn":
        blocks = len(params["filters"])
        if min(height, width) // 2**blocks < 1:
            raise ParamsError(
                f"params.yaml: train.cnn.filters has {blocks} pooling blocks, too many for "
                f"{height}x{width} images (each halves the size); use at most "
                f"{int(math.log2(min(height, width)))}"
            )
    if model == "gan" and (height % 4 or width % 4):
        raise ParamsError(
            f"params.yaml: train.gan needs image height and width divisible by 4 "
            f"(the generator upsamples twice), got {height}x{width}"
        )


def configure_tensorflow(seed: int, deterministic: bool) -> tuple[Any, str]:
    """Seed Python, NumPy and TensorFlow; pick strategy and precision from visible GPUs."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    gpus = tf.config.list_physical_devices("GPU")
    policy = "mixed_float16" if gpus else "float32"
    keras.mixed_precision.set_global_policy(policy)
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    return strategy, policy


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    shuffle_seed: int | None = None,
) -> Any:
    """tf.data pipeline: cast once, cache in memory, shuffle each epoch, batch, prefetch."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    dataset = dataset.map(
        lambda x, y: (tf.cast(x, tf.float32), tf.cast(y, tf.int32)),
        num_parallel_calls=tf.data.AUTOTUNE,
    ).cache()
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def make_optimizer(name: str, learning_rate: float, beta_1: float = 0.9) -> Any:
    import keras

    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=learning_rate, beta_1=beta_1)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9, nesterov=True)


def build_model(model: str, params: dict[str, Any], image_shape: Sequence[int], classes: int):
    """The Keras model for this stage, built from its params section."""
    from models import build_cnn, build_discriminator, build_generator, build_rnn
    from models.gan import ConditionalGAN

    shape = tuple(int(v) for v in image_shape)
    if model == "cnn":
        return build_cnn(
            shape,
            classes,
            filters=params["filters"],
            dense_units=params["dense_units"],
            dropout=params["dropout"],
            augment=bool(params.get("augment", False)),
        )
    if model == "rnn":
        return build_rnn(
            shape,
            classes,
            lstm_units=params["lstm_units"],
            dropout=params["dropout"],
            bidirectional=bool(params.get("bidirectional", False)),
        )
    base_filters = int(params.get("base_filters", 64))
    return ConditionalGAN(
        generator=build_generator(params["latent_dim"], classes, shape, base_filters),
        discriminator=build_discriminator(shape, classes, base_filters),
        latent_dim=params["latent_dim"],
        num_classes=classes,
    )


def class_weights_to_use(validation_file: Path) -> dict[str, float] | None:
    """Class weights from the validation report, when it asks training to apply them."""
    if not validation_file.is_file():
        return None
    report = json.loads(validation_file.read_text())
    if not report.get("apply_class_weights"):
        return None
    return {str(k): float(v) for k, v in report["class_weights"].items()}


def _progress_callback(model: str, total_epochs: int, images_per_epoch: int):
    import keras

    class EpochProgress(keras.callbacks.Callback):
        """One log line per epoch: losses and metrics, images/s and ETA."""

        def __init__(self) -> None:
            super().__init__()
            self.epoch_seconds: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            seconds = time.perf_counter() - self._start
            self.epoch_seconds.append(seconds)
            recent = self.epoch_seconds[1:] or self.epoch_seconds
            eta = float(np.median(recent)) * (total_epochs - epoch - 1)
            figures = " ".join(
                f"{k}={v:.4f}" for k, v in sorted((logs or {}).items()) if k != "learning_rate"
            )
            print(
                f"[{model}] epoch {epoch + 1}/{total_epochs} {figures} "
                f"{images_per_epoch / seconds:.0f} img/s eta {eta:.0f}s",
                flush=True,
            )

    return EpochProgress()


def _sample_grid_callback(out_dir: Path, every: int, classes: int, seed: int):
    import keras

    from tasks.figures import save_image_grid

    class SampleGrid(keras.callbacks.Callback):
        """Every N epochs, save a grid with one row per class from fixed noise."""

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if (epoch + 1) % every:
                return
            labels = np.repeat(np.arange(classes), 8)
            noise = np.random.default_rng(seed).normal(size=(len(labels), self.model.latent_dim))
            images = self.model.generate(labels, noise.astype("float32"))
            save_image_grid(np.asarray(images), out_dir / f"epoch_{epoch + 1:03d}.png", columns=8)

    return SampleGrid()


def _checkpoint_dir(root: Path, model: str, fingerprint: str) -> Path:
    """Per-model backup folder, discarded when params or data changed since it was written."""
    directory = root / CHECKPOINTS_DIR / model
    stamp = directory / "fingerprint.txt"
    if directory.exists() and (not stamp.is_file() or stamp.read_text() != fingerprint):
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)
    return directory


def train(model: str, root: Path, params: dict[str, Any]) -> TrainResult:
    """Train `model` from params.yaml's train.<model>; write model files, train.json, curves."""
    from tasks.prepare import load_meta, load_splits

    train_section = section(params, "train")
    model_params = section(params, f"train.{model}")
    check_train_params(model, model_params)
    meta = load_meta(root / PREPARED_META_FILE)
    check_image_shape(model, model_params, meta["image_shape"])
    splits = load_splits(root / SPLITS_FILE)
    classes = len(meta["class_names"])
    seed = int(section(params, "seed"))

    import keras
    import tensorflow as tf

    strategy, policy = configure_tensorflow(seed, bool(train_section.get("deterministic", False)))
    batch_size = int(model_params["batch_size"]) * strategy.num_replicas_in_sync
    epochs = int(model_params["epochs"])
    train_data = make_dataset(splits.x["train"], splits.y["train"], batch_size, shuffle_seed=seed)
    fingerprint = json.dumps(
        {"params": model_params, "seed": seed, "splits": os.path.getsize(root / SPLITS_FILE)},
        sort_keys=True,
    )
    backup_dir = _checkpoint_dir(root, model, fingerprint)
    progress = _progress_callback(model, epochs, len(splits.y["train"]))
    callbacks: list[Any] = [keras.callbacks.BackupAndRestore(str(backup_dir / "backup")), progress]
    verbose = 1 if sys.stdout.isatty() else 0
    staging = root / model_dir(model).with_name(f".{model}-staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    class_weights = None

    with strategy.scope():
        network = build_model(model, model_params, meta["image_shape"], classes)
        if model in CLASSIFIERS:
            network.compile(
                optimizer=make_optimizer(model_params["optimizer"], model_params["learning_rate"]),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
                jit_compile=bool(model_params.get("jit_compile", False)),
            )
        else:
            beta_1 = float(model_params.get("beta_1", 0.5))
            network.compile(
                generator_optimizer=make_optimizer(
                    "adam", model_params["generator_learning_rate"], beta_1
                ),
                discriminator_optimizer=make_optimizer(
                    "adam", model_params["discriminator_learning_rate"], beta_1
                ),
            )

    started = time.perf_counter()
    if model in CLASSIFIERS:
        class_weights = class_weights_to_use(root / VALIDATION_METRICS)
        val_data = make_dataset(splits.x["val"], splits.y["val"], batch_size)
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=int(model_params.get("early_stopping_patience", 5)),
                restore_best_weights=True,
            )
        )
        history = network.fit(
            train_data,
            validation_data=val_data,
            epochs=epochs,
            callbacks=callbacks,
            class_weight={int(k): v for k, v in class_weights.items()} if class_weights else None,
            shuffle=False,  # the tf.data pipeline shuffles each epoch
            verbose=verbose,
        ).history
        network.save(staging / "model.keras")
        best_epoch = int(np.argmin(history["val_loss"])) + 1
    else:
        callbacks.append(
            _sample_grid_callback(
                staging / "samples", int(model_params.get("sample_every", 10)), classes, seed
            )
        )
        history = network.fit(
            train_data, epochs=epochs, callbacks=callbacks, shuffle=False, verbose=verbose
        ).history
        network.generator.save(staging / "generator.keras")
        network.discriminator.save(staging / "discriminator.keras")
        best_epoch = len(history.get("g_loss", [])) or epochs
    train_seconds = time.perf_counter() - started

    epoch_seconds = progress.epoch_seconds[1:] or progress.epoch_seconds
    history = {k: [float(v) for v in values] for k, values in history.items()}
    result = TrainResult(
        model=model,
        params=model_params,
        epochs_run=len(next(iter(history.values()), [])),
        best_epoch=best_epoch,
        train_seconds=round(train_seconds, 3),
        images_per_second=round(len(splits.y["train"]) / float(np.median(epoch_seconds)), 1)
        if epoch_seconds
        else 0.0,
        class_weights=class_weights,
        devices=[device.name for device in tf.config.list_logical_devices()],
        precision_policy=policy,
        history=history,
    )
    (staging / "train.json").write_text(json.dumps(asdict(result), indent=2, sort_keys=True))
    final = root / model_dir(model)
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    write_history_csv(history, root / history_plot_file(model))
    shutil.rmtree(backup_dir, ignore_errors=True)
    return result


def write_history_csv(history: dict[str, list[float]], path: Path) -> None:
    """Per-epoch curves as a CSV that `dvc plots show` renders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted(k for k in history if k != "learning_rate")
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", *keys])
        for epoch in range(len(history[keys[0]]) if keys else 0):
            writer.writerow([epoch + 1, *(f"{history[k][epoch]:.6f}" for k in keys)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=MODEL_NAMES)
    parser.add_argument("--params", type=Path, default=PARAMS_FILE)
    parser.add_argument("--root", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        result = train(args.model, args.root, load_params(args.params))
    except (ParamsError, FileNotFoundError) as error:
        print(f"train {args.model} failed before training: {error}", file=sys.stderr)
        return 1
    print(
        f"trained {args.model}: {result.epochs_run} epochs (best {result.best_epoch}) in "
        f"{result.train_seconds:.1f}s, {result.images_per_second:.0f} img/s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
