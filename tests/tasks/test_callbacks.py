"""Training callbacks: the per-epoch record survives a restart and stops on patience."""

from __future__ import annotations

import json
from pathlib import Path

import keras

from tasks.callbacks import HISTORY_FILE, EpochProgress, TrainingRecord


def _tiny_model() -> keras.Model:
    inputs = keras.Input(shape=(2,))
    return keras.Model(inputs, keras.layers.Dense(1)(inputs))


def _epoch(record: TrainingRecord, epoch: int, val_loss: float) -> None:
    record.on_epoch_begin(epoch)
    record.on_epoch_end(epoch, {"loss": 1.0, "val_loss": val_loss, "learning_rate": 0.1})


def test_record_stops_after_patience_epochs_and_restores_the_best(tmp_path: Path) -> None:
    record = TrainingRecord(tmp_path, patience=2)
    record.set_model(_tiny_model())
    record.model.stop_training = False  # as Model.fit sets it
    for epoch, loss in enumerate([0.9, 0.5, 0.7]):
        _epoch(record, epoch, loss)
    assert not record.model.stop_training
    _epoch(record, 3, 0.6)  # second epoch without beating 0.5
    assert record.model.stop_training
    assert record.restore_best() == 2
    assert record.history() == {"loss": [1.0] * 4, "val_loss": [0.9, 0.5, 0.7, 0.6]}
    assert json.loads((tmp_path / HISTORY_FILE).read_text())[1]["val_loss"] == 0.5


def test_a_restarted_record_keeps_the_epochs_before_the_resume_point(tmp_path: Path) -> None:
    first = TrainingRecord(tmp_path, patience=None)
    first.set_model(_tiny_model())
    for epoch, loss in enumerate([0.9, 0.8, 0.7]):
        _epoch(first, epoch, loss)
    # Killed after 3 epochs; the backup says resume at epoch 2 (its last complete backup).
    second = TrainingRecord(tmp_path, patience=None)
    second.set_model(_tiny_model())
    _epoch(second, 2, 0.65)
    assert second.resumed_at == 2 and second.epochs_run == 3
    assert second.history()["val_loss"] == [0.9, 0.8, 0.65]


def test_progress_eta_uses_the_median_epoch_after_the_first() -> None:
    progress = EpochProgress("cnn", total_epochs=10, images_per_epoch=100)
    progress.epoch_seconds = [9.0, 1.0, 3.0, 2.0]
    assert progress.typical_epoch_seconds() == 2.0
    assert EpochProgress("cnn", 1, 1).typical_epoch_seconds() == 0.0
