"""Keras callbacks of a training run: progress lines, a per-epoch record that survives a killed
process (history, best weights, early stopping), atomic backups to resume from, GAN sample grids.

Every file they write goes through `tasks.atomic`: a SIGKILL at any moment leaves either the
previous file or the new one, never half of one, so a restarted training can always resume.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tasks.atomic import atomic_path, write_json
from tasks.checkpoint_store import SharedCheckpoint

HISTORY_FILE = "history.json"  # per-epoch logs of every completed epoch, in the checkpoint folder
BEST_WEIGHTS_FILE = "best.weights.h5"  # weights of the lowest val_loss so far (classifiers)


class EpochProgress(keras.callbacks.Callback):
    """One log line per epoch: losses and metrics, images/s and ETA."""

    def __init__(self, model_name: str, total_epochs: int, images_per_epoch: int) -> None:
        super().__init__()
        self.model_name = model_name
        self.total_epochs = total_epochs
        self.images_per_epoch = images_per_epoch
        self.epoch_seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        seconds = time.perf_counter() - self._start
        self.epoch_seconds.append(seconds)
        eta = self.typical_epoch_seconds() * (self.total_epochs - epoch - 1)
        figures = " ".join(
            f"{k}={v:.4f}" for k, v in sorted((logs or {}).items()) if k != "learning_rate"
        )
        print(
            f"[{self.model_name}] epoch {epoch + 1}/{self.total_epochs} {figures} "
            f"{self.images_per_epoch / seconds:.0f} img/s eta {eta:.0f}s",
            flush=True,
        )

    def typical_epoch_seconds(self) -> float:
        """Median epoch time, without the first epoch (tracing) once there are others."""
        recent = self.epoch_seconds[1:] or self.epoch_seconds
        return float(np.median(recent)) if recent else 0.0


class TrainingRecord(keras.callbacks.Callback):
    """Per-epoch history, best weights and early stopping that survive a killed process.

    The history of every completed epoch is written to `directory` after each epoch; when
    BackupAndRestore resumes at epoch k, the record is cut back to its first k epochs, so the
    final history (and epochs_run) counts the epochs before the kill too. With `patience`
    (classifiers), the weights of the lowest val_loss are kept in `directory` and training
    stops after `patience` epochs without improvement, judged on the whole history.
    """

    def __init__(self, directory: Path, patience: int | None) -> None:
        super().__init__()
        self.history_file = directory / HISTORY_FILE
        self.best_file = directory / BEST_WEIGHTS_FILE
        self.patience = patience
        self.epochs: list[dict[str, float]] | None = None
        self.resumed_at = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.epochs is None:  # first epoch of this process: `epoch` is where it resumes
            saved = json.loads(self.history_file.read_text()) if self.history_file.is_file() else []
            self.epochs = saved[:epoch]
            self.resumed_at = epoch

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epochs = self.epochs or []
        self.epochs.append({k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"})
        if self.patience is not None:
            losses = [record["val_loss"] for record in self.epochs]
            best = int(np.argmin(losses))
            if best == len(losses) - 1:
                with atomic_path(self.best_file) as temporary:
                    self.model.save_weights(temporary)
            elif len(losses) - 1 - best >= self.patience:
                self.model.stop_training = True
        write_json(self.history_file, self.epochs)

    @property
    def epochs_run(self) -> int:
        return len(self.epochs or [])

    def history(self) -> dict[str, list[float]]:
        """Metric name -> one value per epoch, the epochs before a kill included."""
        keys = sorted({k for record in self.epochs or [] for k in record})
        return {k: [record.get(k, float("nan")) for record in self.epochs or []] for k in keys}

    def restore_best(self) -> int:
        """Load the best epoch's weights; return that epoch (1-based)."""
        losses = [record["val_loss"] for record in self.epochs or []]
        if not losses:
            return 0
        if self.best_file.is_file():
            self.model.load_weights(self.best_file)
        return int(np.argmin(losses)) + 1


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """keras BackupAndRestore whose files are replaced atomically.

    Keras writes latest.weights.h5 in place, so a SIGKILL during the write leaves a corrupt file
    that the restarted run cannot load. Here the weights, then the epoch metadata, are written
    to temporary files and renamed over the old ones. (A kill between the two renames resumes
    one epoch early from the newer weights: one extra epoch, never a crash.)
    """

    def __init__(self, directory: Path) -> None:
        super().__init__(str(directory))

    def _save_model(self) -> None:
        with atomic_path(self._weights_path) as temporary:
            self.model.save_weights(filepath=temporary, overwrite=True)
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
        write_json(self._training_metadata_path, metadata)


class SampleGrid(keras.callbacks.Callback):
    """Every `every` epochs, save a GAN sample grid (one row per class) from fixed noise."""

    def __init__(self, out_dir: Path, every: int, classes: int, seed: int) -> None:
        super().__init__()
        self.out_dir = out_dir
        self.every = every
        self.classes = classes
        self.seed = seed

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        from tasks.figures import save_image_grid

        if (epoch + 1) % self.every:
            return
        labels = np.repeat(np.arange(self.classes), 8)
        noise = np.random.default_rng(self.seed).normal(size=(len(labels), self.model.latent_dim))
        images = self.model.generate(labels, noise.astype("float32"))
        path = self.out_dir / f"epoch_{epoch + 1:03d}.png"
        save_image_grid(np.asarray(images), path, columns=8)


class ShareCheckpoint(keras.callbacks.Callback):
    """After each epoch's backup, copy the checkpoint folder to the shared store, so a retry on
    another host resumes from it (tasks/checkpoint_store.py)."""

    def __init__(self, shared: SharedCheckpoint, directory: Path) -> None:
        super().__init__()
        self.shared = shared
        self.directory = directory

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.shared.upload(self.directory, epoch + 1)
