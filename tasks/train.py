"""Train: fit one model (cnn, rnn or gan) on the prepared splits and save it atomically.

One code path for every machine: the distribution strategy and precision policy are chosen from
the devices TensorFlow sees (mixed precision on GPUs only, MirroredStrategy on several). A
checkpoint is kept each epoch, so a killed run resumes from its last completed epoch; changing
the params, the seed or the prepared data (their bytes, not their size) discards it.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
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
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.atomic import atomic_path, replace_dir, write_text
from tasks.checkpoint_store import CheckpointStoreError, SharedCheckpoint, shared_checkpoint
from tasks.params import (
    CNNParams,
    GANParams,
    ModelParams,
    ParamsError,
    RNNParams,
    TrainParams,
    load_section,
    load_seed,
)
from tasks.paths import (
    CLASSIFIER_FILE,
    DISCRIMINATOR_FILE,
    GENERATOR_FILE,
    MODEL_NAMES,
    PARAMS_FILE,
    PREPARED_META_FILE,
    SAMPLES_DIR,
    SPLITS_FILE,
    TRAINING_RECORD,
    VALIDATION_METRICS,
    checkpoint_root,
    history_plot_file,
    model_dir,
)
from tasks.settings import Settings, SettingsError

if TYPE_CHECKING:
    import keras

    from tasks.callbacks import TrainingRecord
    from tasks.prepare import Splits

logger = logging.getLogger("imgflow.train")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out

FINGERPRINT_FILE = "fingerprint.txt"  # in the checkpoint folder: what the checkpoint belongs to
BACKUP_DIR = "backup"  # BackupAndRestore's folder inside the checkpoint folder


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


def check_image_shape(params: ModelParams, image_shape: Sequence[int]) -> None:
    """Fail early when the architecture cannot take this image size."""
    height, width = int(image_shape[0]), int(image_shape[1])
    if isinstance(params, CNNParams):
        blocks = len(params.filters)
        if min(height, width) // 2**blocks < 1:
            raise ParamsError(
                f"params.yaml: train.cnn.filters has {blocks} pooling blocks, too many for "
                f"{height}x{width} images (each halves the size); use at most "
                f"{int(math.log2(min(height, width)))}"
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
    params: ModelParams,
    image_shape: Sequence[int],
    classes: int,
    seed: int | None = None,
    gpu_count: int = 0,
) -> keras.Model:
    """The Keras model of this params section (CNN, RNN or conditional GAN).

    `train.rnn.unroll` applies on CPU only: on a GPU the fused cuDNN LSTM kernel, which needs
    the time loop, is faster.
    """
    from models import build_cnn, build_discriminator, build_generator, build_rnn
    from models.gan import ConditionalGAN

    shape = (int(image_shape[0]), int(image_shape[1]), int(image_shape[2]))
    if isinstance(params, CNNParams):
        return build_cnn(
            shape,
            classes,
            filters=params.filters,
            dense_units=params.dense_units,
            dropout=params.dropout,
            augment=params.augment,
            seed=seed,
        )
    if isinstance(params, RNNParams):
        return build_rnn(
            shape,
            classes,
            lstm_units=params.lstm_units,
            dropout=params.dropout,
            bidirectional=params.bidirectional,
            unroll=params.unroll and gpu_count == 0,
        )
    return ConditionalGAN(
        generator=build_generator(params.latent_dim, classes, shape, params.base_filters),
        discriminator=build_discriminator(shape, classes, params.base_filters),
        latent_dim=params.latent_dim,
        num_classes=classes,
        seed=seed,
        label_smoothing=params.label_smoothing,
        class_loss_weight=params.class_loss_weight,
    )


def compile_model(network: keras.Model, params: ModelParams, steps_per_epoch: int) -> None:
    """Compile with the params' optimizers; classifiers warm up linearly, then follow a cosine
    learning-rate decay over the planned steps (tasks/budget.py; a function of the optimizer's
    step count, so a resumed run continues on the same curve)."""
    from tasks.budget import learning_rate_schedule, plan_budget

    if isinstance(params, GANParams):
        network.compile(
            generator_optimizer=make_optimizer(
                "adam", params.generator_learning_rate, params.beta_1
            ),
            discriminator_optimizer=make_optimizer(
                "adam", params.discriminator_learning_rate, params.beta_1
            ),
        )
        return
    schedule = learning_rate_schedule(params.learning_rate, plan_budget(params, steps_per_epoch))
    network.compile(
        optimizer=make_optimizer(params.optimizer, schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=params.jit_compile,
        # Batches per call into the compiled graph: fewer Python round trips per epoch.
        steps_per_execution=params.steps_per_execution,
    )


def class_weights_to_use(validation_file: Path) -> dict[str, float] | None:
    """Class weights from the validation report, when it asks training to apply them."""
    if not validation_file.is_file():
        return None
    report = json.loads(validation_file.read_text())
    if not report.get("apply_class_weights"):
        return None
    return {str(k): float(v) for k, v in report["class_weights"].items()}


def file_md5(path: Path) -> str:
    """md5 of a file's bytes, read in chunks."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


def checkpoint_fingerprint(
    params: ModelParams, seed: int, deterministic: bool, splits_file: Path
) -> str:
    """What a checkpoint belongs to: the model's params, the seed and the prepared data's bytes.

    The splits are hashed by content: re-prepared data of the same size is different data.
    """
    return json.dumps(
        {
            "params": params.model_dump(mode="json"),
            "seed": seed,
            "deterministic": deterministic,
            "splits_md5": file_md5(splits_file),
        },
        sort_keys=True,
    )


def open_checkpoint(
    model: str, root: Path, fingerprint: str, shared: SharedCheckpoint | None = None
) -> Path:
    """Per-model checkpoint folder, emptied when it was written for another fingerprint.

    Without a local checkpoint, the shared store's copy (if any) is downloaded, so a training
    killed on another host resumes here from its last completed epoch.
    """
    directory = checkpoint_root(model, root)
    stamp = directory / FINGERPRINT_FILE
    if directory.exists() and (not stamp.is_file() or stamp.read_text() != fingerprint):
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_text(stamp, fingerprint)
    if shared is not None and not (directory / BACKUP_DIR).exists():
        epoch = shared.download(directory)
        if epoch is not None:
            logger.info("%s: resuming from the shared checkpoint of epoch %d", model, epoch)
    return directory


def load_training_data(root: Path, params: ModelParams) -> tuple[dict[str, Any], Splits]:
    """The prepared metadata and splits, after checking the architecture fits the images."""
    from tasks.prepare import load_meta, load_splits

    meta = load_meta(root / PREPARED_META_FILE)
    check_image_shape(params, meta["image_shape"])
    return meta, load_splits(root / SPLITS_FILE)


def _verbosity() -> int:
    """Keras' progress bar on a terminal only; logs get one line per epoch instead."""
    return 1 if sys.stdout.isatty() else 0


def fit_classifier(
    network: keras.Model,
    train_data: Any,
    splits: Splits,
    params: CNNParams | RNNParams,
    batch_size: int,
    callbacks: list[Any],
    root: Path,
    epochs: int | None = None,
) -> dict[str, float] | None:
    """Fit a CNN or RNN with validation (class weights when validation asks for them) for
    `epochs` (default: the params'); returns the class weights used."""
    class_weights = class_weights_to_use(root / VALIDATION_METRICS)
    if class_weights:
        logger.info("training %s with class weights %s", network.name, class_weights)
    network.fit(
        train_data,
        validation_data=make_dataset(splits.x["val"], splits.y["val"], batch_size),
        epochs=epochs or params.epochs,
        callbacks=callbacks,
        class_weight={int(k): v for k, v in class_weights.items()} if class_weights else None,
        shuffle=False,  # the tf.data pipeline shuffles each epoch
        verbose=_verbosity(),
    )
    return class_weights


def fit_gan(
    network: keras.Model,
    train_data: Any,
    params: GANParams,
    callbacks: list[Any],
    samples_dir: Path,
    seed: int,
    epochs: int | None = None,
) -> None:
    """Fit the GAN (no validation split) for `epochs` (default: the params'); sample grids go
    to `samples_dir` every few epochs."""
    from tasks.callbacks import SampleGrid

    grids = SampleGrid(samples_dir, params.sample_every, network.num_classes, seed)
    network.fit(
        train_data,
        epochs=epochs or params.epochs,
        callbacks=[grids, *callbacks],  # the grid is on disk before the checkpoint copy
        shuffle=False,
        verbose=_verbosity(),
    )


def save_network(
    network: keras.Model, params: ModelParams, record: TrainingRecord, staging: Path, backup: Path
) -> int:
    """Save the trained network's Keras files into `staging`; returns the best epoch (1-based).

    Classifiers keep the weights of their lowest val_loss; the GAN keeps its last epoch and the
    sample grids, which sit in the checkpoint folder until now so a killed run keeps them.
    """
    if not isinstance(params, GANParams):
        best_epoch = record.restore_best()
        network.save(staging / CLASSIFIER_FILE)
        return best_epoch
    samples = backup / SAMPLES_DIR
    if samples.is_dir():
        shutil.copytree(samples, staging / SAMPLES_DIR)
    network.generator.save(staging / GENERATOR_FILE)
    network.discriminator.save(staging / DISCRIMINATOR_FILE)
    return record.epochs_run or params.epochs


def write_training_record(result: TrainResult, directory: Path) -> Path:
    """train.json: what the training did, next to the model it describes."""
    record = json.dumps(asdict(result), indent=2, sort_keys=True)
    return write_text(directory / TRAINING_RECORD, record)


def publish(model: str, root: Path, staging: Path, result: TrainResult) -> None:
    """Write train.json, swap the staged model folder in, write the curves, drop the checkpoint.

    The model folder is built complete under a hidden name and renamed into place, so readers
    see the previous model or the new one, never a mix.
    """
    write_training_record(result, staging)
    replace_dir(staging, model_dir(model, root))
    write_history_csv(result.history, history_plot_file(model, root))
    shutil.rmtree(checkpoint_root(model, root), ignore_errors=True)


def _staging_dir(model: str, root: Path) -> Path:
    staging = model_dir(model, root).with_name(f".{model}-staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def epoch_callbacks(
    record: TrainingRecord, backup: Path, shared: SharedCheckpoint | None, progress: Any
) -> list[Any]:
    """The record first, so an epoch's history is on disk before its backup, and both before
    the shared copy; the progress line last."""
    from tasks.callbacks import AtomicBackupAndRestore, ShareCheckpoint

    callbacks: list[Any] = [record, AtomicBackupAndRestore(backup / BACKUP_DIR)]
    if shared is not None:
        callbacks.append(ShareCheckpoint(shared, backup))
    return [*callbacks, progress]


def train(model: str, root: Path, params: TrainParams, seed: int) -> TrainResult:
    """Train `model` from its params section; write model files, train.json and curves."""
    import tensorflow as tf

    from tasks.budget import plan_budget
    from tasks.callbacks import EpochProgress, TrainingRecord

    section = params.model(model)
    meta, splits = load_training_data(root, section)
    strategy, policy = configure_tensorflow(seed, params.deterministic)
    batch_size = section.batch_size * strategy.num_replicas_in_sync
    images = len(splits.y["train"])
    train_data = make_dataset(splits.x["train"], splits.y["train"], batch_size, shuffle_seed=seed)
    fingerprint = checkpoint_fingerprint(section, seed, params.deterministic, root / SPLITS_FILE)
    shared = shared_checkpoint(model, fingerprint, Settings.from_environment())
    backup = open_checkpoint(model, root, fingerprint, shared)
    budget = plan_budget(section, math.ceil(images / batch_size))
    progress = EpochProgress(model, budget.epochs, images)
    record = TrainingRecord(backup, budget.patience)
    callbacks = epoch_callbacks(record, backup, shared, progress)
    staging = _staging_dir(model, root)
    gpus = len(tf.config.list_physical_devices("GPU"))
    with strategy.scope():
        network = build_model(section, meta["image_shape"], len(meta["class_names"]), seed, gpus)
        compile_model(network, section, math.ceil(images / batch_size))

    started = time.perf_counter()
    class_weights = None
    if isinstance(section, GANParams):
        fit_gan(network, train_data, section, callbacks, backup / SAMPLES_DIR, seed, budget.epochs)
    else:
        class_weights = fit_classifier(
            network, train_data, splits, section, batch_size, callbacks, root, budget.epochs
        )
    best_epoch = save_network(network, section, record, staging, backup)
    train_seconds = time.perf_counter() - started

    typical = progress.typical_epoch_seconds()
    result = TrainResult(
        model=model,
        params=section.model_dump(mode="json"),
        epochs_run=record.epochs_run,
        best_epoch=best_epoch,
        train_seconds=round(train_seconds, 3),
        images_per_second=round(images / typical, 1) if typical else 0.0,
        class_weights=class_weights,
        devices=[device.name for device in tf.config.list_logical_devices()],
        precision_policy=policy,
        history=record.history(),
        resumed_at_epoch=record.resumed_at,
    )
    publish(model, root, staging, result)
    if shared is not None:
        shared.discard()
    return result


def write_history_csv(history: dict[str, list[float]], path: Path) -> None:
    """Per-epoch curves as a CSV that `dvc plots show` renders, written atomically."""
    keys = sorted(k for k in history if k != "learning_rate")
    with atomic_path(path) as temporary, temporary.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", *keys])
        for epoch in range(len(history[keys[0]]) if keys else 0):
            writer.writerow([epoch + 1, *(f"{history[k][epoch]:.6f}" for k in keys)])


def restore_only_message(model: str) -> str:
    """Why a scheduler restoring a worker's training refuses to train it itself."""
    return (
        f"train {model}: not trained here (IMGFLOW_RESTORE_ONLY is set): DVC's run-cache holds "
        f"no training of train@{model} for this checkout's code, params and prepared data, so "
        "the worker trained other inputs; commit and push the code, then rerun"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=MODEL_NAMES)
    parser.add_argument("--params", type=Path, default=PARAMS_FILE)
    parser.add_argument("--root", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if Settings.from_environment().restore_only:
            print(restore_only_message(args.model), file=sys.stderr)
            return 1
        params = load_section(TrainParams, "train", args.params)
        result = train(args.model, args.root, params, load_seed(args.params))
    except (ParamsError, SettingsError, CheckpointStoreError, FileNotFoundError) as error:
        print(f"train {args.model} failed before training: {error}", file=sys.stderr)
        return 1
    print(
        f"trained {args.model}: {result.epochs_run} epochs (best {result.best_epoch}) in "
        f"{result.train_seconds:.1f}s, {result.images_per_second:.0f} img/s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
