"""Registered models load in Keras safe mode, and a champion predicts raw images via pyfunc."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.registry.scoring import load_keras_version


def test_champion_loads_through_pyfunc_and_predicts_raw_images(
    store, exact_models, register_cnn
) -> None:
    import mlflow

    root, client = store
    exact_models.train_cnn(root, correct=10)
    register_cnn(root)
    uri = client.tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    from tasks.prepare import load_splits

    splits = load_splits(root / "artifacts/prepared/splits.npz")
    raw = splits.x["test"].astype(np.float32)  # 0..255 pixels, no preprocessing
    champion = mlflow.pyfunc.load_model("models:/digits-cnn@champion")
    predicted = np.asarray(champion.predict(raw)).argmax(axis=1)
    assert (predicted == splits.y["test"]).all()


def test_loading_refuses_models_that_would_run_code(tmp_path: Path, use_store) -> None:
    """Keras safe mode: a Lambda layer (arbitrary Python) is not deserialised."""
    import keras
    import mlflow

    uri = use_store(tmp_path)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("safe-mode")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda x: x * 2)])
    with mlflow.start_run():
        info = mlflow.tensorflow.log_model(model, name="model", pip_requirements=["keras"])
    with pytest.raises(ValueError, match="safe_mode"):
        load_keras_version(info.model_uri)
    with pytest.raises(ValueError, match="safe_mode"):
        mlflow.pyfunc.load_model(info.model_uri)
