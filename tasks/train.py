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
# Optional keys: checked when present (the builders' defaults apply otherwise).
_OPTIONAL_KEYS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "cnn": {
        "augment": bool,
        "early_stopping_patience": int,
        "jit_compile": bool,
        "steps_per_execution": int,
    },
    "rnn": {
        "bidirectional": bool,
        "unroll": bool,
        "early_stopping_patience": int,
        "jit_compile": bool,
        "steps_per_execution": int,
    },
    "gan": {
        "beta_1": (int, float),
        "base_filters": int,
        "sample_every": int,
        "label_smoothing": (int, float),
        "class_loss_weight": (int, float),
    },
}
_NON_NEGATIVE = ("dropout", "label_smoothing", "class_loss_weight")


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
    resumed_at_epoch: int = 0  # epochs completed by an earlier, killed process (0: fresh run)


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
        if isinstance(value, int | float) and key not in _NON_NEGATIVE and value <= 0:
            raise ParamsError(f"{prefix}.{key} must be positive, got {value!r}")
    for key, kind in _OPTIONAL_KEYS[model].items():
        if key not in params:
            continue
        value = params[key]
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise ParamsError(f"{prefix}.{key} must be {kind}, got {value!r}")
        if kind is not bool and key not in _NON_NEGATIVE and value <= 0:
            raise ParamsError(f"{prefix}.{key} must be positive, got {value!r}")
    if "beta_1" in params and not 0 <= params["beta_1"] < 1:
        raise ParamsError(f"{prefix}.beta_1 must be in [0, 1), got {params['beta_1']!r}")
    if "label_smoothing" in params and not 0 <= params["label_smoothing"] < 0.5:
        raise ParamsError(
            f"{prefix}.label_smoothing must be in [0, 0.5), got {params['label_smoothing']!r}"
        )
    if "class_loss_weight" in params and params["class_loss_weight"] < 0:
        raise ParamsError(
            f"{prefix}.class_loss_weight must be >= 0, got {params['class_loss_weight']!r}"
        )
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
    policy = precision_policy(len(gpus))
    keras.mixed_precision.set_global_policy(policy)
    return distribution_strategy(len(gpus)), policy


def precision_policy(gpu_count: int) -> str:
    """`mixed_float16` on GPUs (tensor cores), float32 on CPU where float16 only costs time."""
    return "mixed_float16" if gpu_count > 0 else "float32"


def distribution_strategy(gpu_count: int, devices: Sequence[str] | None = None) -> Any:
    """MirroredStrategy (one replica per GPU) when there are several GPUs, else the default."""
    import tensorflow as tf

    if gpu_count > 1:
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


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


def make_optimizer(name: str, learning_rate: Any, beta_1: float = 0.9) -> Any:
    """A Keras optimizer by params.yaml name; `learning_rate` may be a float or a schedule."""
    import keras

    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=learning_rate, beta_1=beta_1)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9, nesterov=True)


def build_model(
    model: str,
    params: dict[str, Any],
    image_shape: Sequence[int],
    classes: int,
    seed: int | None = None,
    gpu_count: int = 0,
):
    """The Keras model for this stage, built from its params section.

    `train.rnn.unroll` applies on CPU only: on a GPU the fused cuDNN LSTM kernel, which needs
    the time loop, is faster.
    """
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
            seed=seed,
        )
    if model == "rnn":
        return build_rnn(
            shape,
            classes,
            lstm_units=params["lstm_units"],
            dropout=params["dropout"],
            bidirectional=bool(params.get("bidirectional", False)),
            unroll=bool(params.get("unroll", False)) and gpu_count == 0,
        )
    base_filters = int(params.get("base_filters", 64))
    return ConditionalGAN(
        generator=build_generator(params["latent_dim"], classes, shape, base_filters),
        discriminator=build_discriminator(shape, classes, base_filters),
        latent_dim=params["latent_dim"],
        num_classes=classes,
        seed=seed,
        label_smoothing=float(params.get("label_smoothing", 0.0)),
        class_loss_weight=float(params.get("class_loss_weight", 1.0)),
    )


def compile_model(model: str, network: Any, params: dict[str, Any], steps_per_epoch: int) -> None:
    """Compile with the params' optimizers; classifiers follow a cosine learning-rate decay over
    all planned epochs (a function of the optimizer's step count, so a resumed run continues
    on the same curve)."""
    import keras

    if model in CLASSIFIERS:
        schedule = keras.optimizers.schedules.CosineDecay(
            float(params["learning_rate"]),
            decay_steps=max(1, int(params["epochs"]) * steps_per_epoch),
            alpha=0.01,
        )
        network.compile(
            optimizer=make_optimizer(params["optimizer"], schedule),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=bool(params.get("jit_compile", False)),
            # Batches per call into the compiled graph: fewer Python round trips per epoch.
            steps_per_execution=int(params.get("steps_per_execution", 1)),
        )
        return
    beta_1 = float(params.get("beta_1", 0.5))
    network.compile(
        generator_optimizer=make_optimizer("adam", params["generator_learning_rate"], beta_1),
        discriminator_optimizer=make_optimizer(
            "adam", params["discriminator_learning_rate"], beta_1
        ),
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


def _training_record_callback(directory: Path, patience: int | None):
    """Per-epoch history, best weights and early stopping that survive a killed process.

    The history of every completed epoch is written to `directory` after each epoch; when
    BackupAndRestore resumes at epoch k, the record is cut back to its first k epochs, so the
    final history (and epochs_run) counts the epochs before the kill too. With `patience`
    (classifiers), the weights of the lowest val_loss are kept in `directory` and training
    stops after `patience` epochs without improvement, judged on the whole history.
    """
    import keras

    history_file = directory / "history.json"
    best_file = directory / "best.weights.h5"

    class TrainingRecord(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epochs: list[dict[str, float]] | None = None
            self.resumed_at = 0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            if self.epochs is None:  # first epoch of this process: `epoch` is where it resumes
                saved = json.loads(history_file.read_text()) if history_file.is_file() else []
                self.epochs = saved[:epoch]
                self.resumed_at = epoch

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.epochs = self.epochs or []
            self.epochs.append(
                {k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
            )
            if patience is not None:
                losses = [record["val_loss"] for record in self.epochs]
                best = int(np.argmin(losses))
                if best == len(losses) - 1:
                    self.model.save_weights(directory / "best.tmp.weights.h5")
                    os.replace(directory / "best.tmp.weights.h5", best_file)
                elif len(losses) - 1 - best >= patience:
                    self.model.stop_training = True
            temporary = history_file.with_suffix(".tmp")
            temporary.write_text(json.dumps(self.epochs))
            os.replace(temporary, history_file)

        def history(self) -> dict[str, list[float]]:
            keys = sorted({k for record in self.epochs or [] for k in record})
            return {k: [record.get(k, float("nan")) for record in self.epochs or []] for k in keys}

        def restore_best(self) -> int:
            """Load the best epoch's weights; return that epoch (1-based)."""
            losses = [record["val_loss"] for record in self.epochs or []]
            if not losses:
                return 0
            if best_file.is_file():
                self.model.load_weights(best_file)
            return int(np.argmin(losses)) + 1

    return TrainingRecord()


def _backup_callback(directory: Path):
    """keras BackupAndRestore whose files are replaced atomically.

    Keras writes latest.weights.h5 in place, so a SIGKILL during the write leaves a corrupt file
    that the restarted run cannot load. Here the weights, then the epoch metadata, are written
    to temporary files and renamed over the old ones. (A kill between the two renames resumes
    one epoch early from the newer weights: one extra epoch, never a crash.)
    """
    import keras

    class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
        def _save_model(self) -> None:
            os.makedirs(self.backup_dir, exist_ok=True)
            weights = f"{self._weights_path}.tmp.weights.h5"
            self.model.save_weights(filepath=weights, overwrite=True)
            os.replace(weights, self._weights_path)
            metadata = f"{self._training_metadata_path}.tmp"
            with open(metadata, "w") as handle:
                json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen}, handle)
            os.replace(metadata, self._training_metadata_path)

    return AtomicBackupAndRestore(str(directory))


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

    import tensorflow as tf

    strategy, policy = configure_tensorflow(seed, bool(train_section.get("deterministic", False)))
    batch_size = int(model_params["batch_size"]) * strategy.num_replicas_in_sync
    epochs = int(model_params["epochs"])
    train_images = len(splits.y["train"])
    train_data = make_dataset(splits.x["train"], splits.y["train"], batch_size, shuffle_seed=seed)
    fingerprint = json.dumps(
        {
            "params": model_params,
            "seed": seed,
            "deterministic": bool(train_section.get("deterministic", False)),
            "splits": os.path.getsize(root / SPLITS_FILE),
        },
        sort_keys=True,
    )
    backup_dir = _checkpoint_dir(root, model, fingerprint)
    progress = _progress_callback(model, epochs, train_images)
    patience = int(model_params.get("early_stopping_patience", 5)) if model in CLASSIFIERS else None
    record = _training_record_callback(backup_dir, patience)
    # The record runs first so its history of an epoch is on disk before the backup of it.
    callbacks: list[Any] = [
        record,
        _backup_callback(backup_dir / "backup"),
        progress,
    ]
    verbose = 1 if sys.stdout.isatty() else 0
    staging = root / model_dir(model).with_name(f".{model}-staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    class_weights = None

    with strategy.scope():
        network = build_model(
            model,
            model_params,
            meta["image_shape"],
            classes,
            seed=seed,
            gpu_count=len(tf.config.list_physical_devices("GPU")),
        )
        compile_model(model, network, model_params, math.ceil(train_images / batch_size))

    started = time.perf_counter()
    if model in CLASSIFIERS:
        class_weights = class_weights_to_use(root / VALIDATION_METRICS)
        if class_weights:
            logger.info("training %s with class weights %s", model, class_weights)
        val_data = make_dataset(splits.x["val"], splits.y["val"], batch_size)
        network.fit(
            train_data,
            validation_data=val_data,
            epochs=epochs,
            callbacks=callbacks,
            class_weight={int(k): v for k, v in class_weights.items()} if class_weights else None,
            shuffle=False,  # the tf.data pipeline shuffles each epoch
            verbose=verbose,
        )
        best_epoch = record.restore_best()
        network.save(staging / "model.keras")
    else:
        # Grids go to the checkpoint folder first, so those of a killed process are kept.
        samples = backup_dir / "samples"
        every = int(model_params.get("sample_every", 10))
        callbacks.append(_sample_grid_callback(samples, every, classes, seed))
        network.fit(train_data, epochs=epochs, callbacks=callbacks, shuffle=False, verbose=verbose)
        if samples.is_dir():
            shutil.copytree(samples, staging / "samples")
        network.generator.save(staging / "generator.keras")
        network.discriminator.save(staging / "discriminator.keras")
        best_epoch = len(record.epochs or []) or epochs
    train_seconds = time.perf_counter() - started

    epoch_seconds = progress.epoch_seconds[1:] or progress.epoch_seconds
    history = record.history()
    result = TrainResult(
        model=model,
        params=model_params,
        epochs_run=len(record.epochs or []),
        best_epoch=best_epoch,
        train_seconds=round(train_seconds, 3),
        images_per_second=round(train_images / float(np.median(epoch_seconds)), 1)
        if epoch_seconds
        else 0.0,
        class_weights=class_weights,
        devices=[device.name for device in tf.config.list_logical_devices()],
        precision_policy=policy,
        history=history,
        resumed_at_epoch=record.resumed_at,
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
