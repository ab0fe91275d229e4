"""Fixtures of the registry tests: a fake repository root as `dvc repro evaluate` leaves it (tiny
Keras models, metrics, splits, params), an isolated sqlite MLflow store per test, and one shared
registration for read-only tests."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tasks.atomic import write_json
from tasks.evaluate import write_metrics
from tasks.paths import (
    CLASSIFIER_FILE,
    DISCRIMINATOR_FILE,
    GENERATOR_FILE,
    PREPARED_META_FILE,
    SPLITS,
    SPLITS_FILE,
    VALIDATION_METRICS,
    history_plot_file,
    model_dir,
    model_file,
    model_metrics_file,
)
from tasks.prepare import Splits, save_splits
from tasks.registry.stage_params import StageParams
from tasks.train import TrainResult, write_history_csv, write_training_record
from tasks.validation.report import CheckResult, ValidationReport, write_report

DATASET = "digits"
IMAGE_SHAPE = (8, 8, 1)
CLASSES = [str(digit) for digit in range(10)]
LATENT_DIM = 4
EPOCHS = {"cnn": 3, "rnn": 2, "gan": 4}
DATA_MD5 = "0123456789abcdef0123456789abcdef.dir"
PARAMS: dict[str, Any] = {
    "seed": 42,
    "prepare": {"val_fraction": 0.1, "test_fraction": 0.1},
    "train": {
        "deterministic": False,
        "cnn": {"epochs": 3, "batch_size": 8, "optimizer": "adam", "learning_rate": 0.01,
                "filters": [2], "dense_units": 4, "dropout": 0.1},
        "rnn": {"epochs": 2, "batch_size": 8, "optimizer": "adam", "learning_rate": 0.01,
                "lstm_units": [4], "dropout": 0.0},
        "gan": {"epochs": 4, "batch_size": 8, "latent_dim": LATENT_DIM,
                "generator_learning_rate": 0.001, "discriminator_learning_rate": 0.001},
    },
    "evaluate": {"gan_samples": 20, "confidence": 0.5},
    "register": {
        "experiment": "imgflow-test",
        "tolerance": 0.01,
        "thresholds": {
            "cnn": {"test_accuracy": {"min": 0.5}},
            "rnn": {"test_accuracy": {"min": 0.5}},
            "gan": {"recognisable_share": {"min": 0.5}},
        },
    },
}  # fmt: skip


def save_tiny_models(out: Path) -> Path:
    """cnn/rnn classifiers and a two-input GAN generator + discriminator, built-in layers only."""
    import keras

    keras.Sequential(
        [
            keras.Input(IMAGE_SHAPE),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(2, 3, activation="relu"),
            # The GAN's judge needs an "embedding" layer (models.EMBEDDING_LAYER_NAME).
            keras.layers.Flatten(name="embedding"),
            keras.layers.Dense(len(CLASSES), activation="softmax"),
        ]
    ).save(out / "cnn.keras")
    keras.Sequential(
        [
            keras.Input(IMAGE_SHAPE),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Reshape(IMAGE_SHAPE[:2]),
            keras.layers.LSTM(4),
            keras.layers.Dense(len(CLASSES), activation="softmax"),
        ]
    ).save(out / "rnn.keras")
    noise = keras.Input((LATENT_DIM,), name="noise", dtype="float32")
    label = keras.Input((1,), name="label", dtype="int32")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(len(CLASSES), 4)(label))
    hidden = keras.layers.Dense(int(np.prod(IMAGE_SHAPE)), activation="tanh")(
        keras.layers.Concatenate()([noise, embedded])
    )
    keras.Model([noise, label], keras.layers.Reshape(IMAGE_SHAPE)(hidden)).save(
        out / "generator.keras"
    )
    keras.Sequential(
        [keras.Input(IMAGE_SHAPE), keras.layers.Flatten(), keras.layers.Dense(1)]
    ).save(out / "discriminator.keras")
    return out


def history(model: str) -> dict[str, list[float]]:
    keys = ("d_loss", "g_loss") if model == "gan" else ("loss", "val_loss", "accuracy")
    return {key: [1.0 / (epoch + 1) for epoch in range(EPOCHS[model])] for key in keys}


def write_splits(root: Path, per_class: int = 3) -> None:
    """splits.npz written by prepare's writer: class k images have pixel k bright, the rest dim."""
    rng = np.random.default_rng(0)
    x, y, paths = {}, {}, {}
    for split in SPLITS:
        labels = np.repeat(np.arange(len(CLASSES)), per_class)
        images = rng.integers(0, 40, size=(len(labels), *IMAGE_SHAPE)).astype(np.uint8)
        flat = images.reshape(len(labels), -1)
        flat[np.arange(len(labels)), labels] = 255
        x[split] = flat.reshape(images.shape)
        y[split] = labels.astype(np.int64)
        paths[split] = np.array([f"{split}/{i}.png" for i in range(len(labels))])
    save_splits(Splits(x, y, paths), root / SPLITS_FILE)


def _write_model(root: Path, model: str, keras_files: Path) -> None:
    """A model folder, its metrics and curves as train@<model> and evaluate@<model> write them."""
    directory = model_dir(model, root)
    directory.mkdir(parents=True)
    if model == "gan":
        for name in (GENERATOR_FILE, DISCRIMINATOR_FILE):
            shutil.copy(keras_files / name, directory / name)
        metrics = {"recognisable_share": 0.8, "classes_covered": 10, "frechet_distance": 12.3,
                   "diversity_score": 0.75}  # fmt: skip
    else:
        shutil.copy(keras_files / f"{model}.keras", directory / CLASSIFIER_FILE)
        metrics = {"test_accuracy": 0.9, "test_loss": 0.3, "macro_f1": 0.88}
    result = TrainResult(
        model=model,
        params=PARAMS["train"][model],
        epochs_run=EPOCHS[model],
        best_epoch=EPOCHS[model] - 1,
        train_seconds=1.5,
        images_per_second=1000.0,
        class_weights={"0": 1.1, "1": 0.9} if model == "cnn" else None,
        devices=["/physical_device:CPU:0"],
        precision_policy="float32",
        history=history(model),
    )
    write_training_record(result, directory)
    write_metrics(metrics, model_metrics_file(model, root))
    write_history_csv(result.history, history_plot_file(model, root))


def build_root(root: Path, keras_files: Path) -> Path:
    """A repository root as `dvc repro evaluate` would leave it (plots included)."""
    root.mkdir(parents=True, exist_ok=True)
    outs = [{"md5": DATA_MD5, "size": 1, "nfiles": 1, "hash": "md5", "path": "data"}]
    (root / "data.dvc").write_text(yaml.safe_dump({"outs": outs}))
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    meta = {"name": DATASET, "class_names": CLASSES, "image_shape": list(IMAGE_SHAPE)}
    write_json(root / PREPARED_META_FILE, meta)
    write_splits(root)
    # Written by the validation step's own report writer, with a real check of its suite.
    class_kl = CheckResult("class_kl", True, 0.01, "<= 0.02 (warning), <= 0.5 (error)")
    write_report(ValidationReport([class_kl], class_weights={"0": 1.0}), root / VALIDATION_METRICS)
    for model in ("cnn", "rnn", "gan"):
        _write_model(root, model, keras_files)
    (root / "plots/images/gan").mkdir(parents=True)
    (root / "plots/images/gan/samples.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (model_dir("gan", root) / "samples").mkdir()
    (model_dir("gan", root) / "samples/epoch_005.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return root


@dataclass(frozen=True)
class FakeRepo:
    """The fake repository's layout and values, and helpers to build and change it."""

    dataset: str = DATASET
    image_shape: tuple[int, ...] = IMAGE_SHAPE
    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    latent_dim: int = LATENT_DIM
    epochs: dict[str, int] = field(default_factory=lambda: dict(EPOCHS))
    data_md5: str = DATA_MD5
    params: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(PARAMS))
    keras_files: Path = Path()

    def build(self, root: Path) -> Path:
        return build_root(root, self.keras_files)

    @staticmethod
    def stage_params(root: Path, data: dict[str, Any] | None = None) -> StageParams:
        """The register stage's params from root/params.yaml (rewritten first from `data`)."""
        if data is not None:
            (root / "params.yaml").write_text(yaml.safe_dump(data))
        return StageParams.load(root / "params.yaml")

    history = staticmethod(history)
    write_splits = staticmethod(write_splits)


@pytest.fixture(scope="session")
def keras_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny untrained models built once per session."""
    return save_tiny_models(tmp_path_factory.mktemp("keras"))


@pytest.fixture
def fake_repo(keras_files: Path) -> FakeRepo:
    return FakeRepo(keras_files=keras_files)


def _use_store(monkeypatch: pytest.MonkeyPatch, workdir: Path) -> str:
    uri = f"sqlite:///{workdir}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(workdir)
    return uri


@pytest.fixture
def use_store(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], str]:
    """use_store(folder): a fresh sqlite MLflow store there (MLFLOW_TRACKING_URI, cwd)."""
    return lambda workdir: _use_store(monkeypatch, workdir)


@pytest.fixture(autouse=True)
def _reset_mlflow_uris() -> Iterator[None]:
    """register sets MLflow's process-global URIs; clear them so no test sees another's store."""
    yield
    import mlflow

    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


@pytest.fixture
def store(tmp_path: Path, use_store: Callable[[Path], str], fake_repo: FakeRepo):
    """(repo root, MlflowClient on a fresh store) for tests that register themselves."""
    from mlflow import MlflowClient

    uri = use_store(tmp_path)
    root = fake_repo.build(tmp_path / "repo")
    return root, MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory, keras_files: Path):
    """One registration of all three models, shared by a module's read-only tests:
    (root, entries, client, tracking uri)."""
    from mlflow import MlflowClient

    from tasks.register import register_models

    workdir = tmp_path_factory.mktemp("registered")
    with pytest.MonkeyPatch.context() as monkeypatch:
        uri = _use_store(monkeypatch, workdir)
        root = build_root(workdir / "repo", keras_files)
        results = register_models(root, StageParams.load(root / "params.yaml"))
        yield root, results, MlflowClient(tracking_uri=uri, registry_uri=uri), uri


class ExactModels:
    """Models whose scores are known by construction: test images of class k have pixel k
    bright, and a Dense layer mapping pixel k to class k scores 100 %; mapping only some pixels
    to their class gives a known lower accuracy. So "better" and "worse" are real re-scored
    facts."""

    @staticmethod
    def save_classifier(path: Path, correct: int, scale: float = 20.0) -> None:
        """Dense classifier mapping pixel k -> class k for the first `correct` classes, k+1
        else."""
        import keras

        classes = len(CLASSES)
        model = keras.Sequential(
            [
                keras.Input(IMAGE_SHAPE),
                keras.layers.Rescaling(1 / 255),
                keras.layers.Flatten(name="embedding"),
                keras.layers.Dense(classes, activation="softmax"),
            ]
        )
        weights = np.zeros((int(np.prod(IMAGE_SHAPE)), classes), np.float32)
        for pixel in range(classes):
            weights[pixel, pixel if pixel < correct else (pixel + 1) % classes] = scale
        model.layers[-1].set_weights([weights, np.zeros(classes, np.float32)])
        model.save(path)

    def train_cnn(self, root: Path, correct: int, scale: float = 20.0) -> dict:
        """Replace the run's CNN and write its real metrics, as train@cnn + evaluate@cnn would."""
        import keras

        from tasks.evaluate import score_classifier
        from tasks.prepare import load_splits

        path = model_file("cnn", root)
        self.save_classifier(path, correct, scale)
        splits = load_splits(root / SPLITS_FILE)
        network = keras.models.load_model(path, safe_mode=True)
        metrics = score_classifier(network, splits.x["test"], splits.y["test"], CLASSES)
        write_metrics(metrics, model_metrics_file("cnn", root))
        return metrics

    @staticmethod
    def save_generator(path: Path, noise_weight: float = 0.0) -> None:
        """Generator that draws class k as pixel k bright (tanh +1) on a dark (-1) background:
        every sample is recognisable to an exact classifier and mostly misread by a weak one."""
        import keras

        size = int(np.prod(IMAGE_SHAPE))
        noise = keras.Input((LATENT_DIM,), name="noise", dtype="float32")
        label = keras.Input((1,), name="label", dtype="int32")
        table = np.full((len(CLASSES), size), -1.0, np.float32)
        table[np.arange(len(CLASSES)), np.arange(len(CLASSES))] = 1.0
        drawn = keras.layers.Flatten()(
            keras.layers.Embedding(len(CLASSES), size, weights=[table], name="draw")(label)
        )
        # The noise input must reach the output; with weight 0 it changes nothing.
        ignored = keras.layers.Dense(size, kernel_initializer="zeros", use_bias=False)(noise)
        ignored = keras.layers.Rescaling(noise_weight)(ignored)
        image = keras.layers.Reshape(IMAGE_SHAPE)(keras.layers.Add()([drawn, ignored]))
        keras.Model([noise, label], image).save(path)

    @staticmethod
    def save_copying_generator(
        path: Path, images: np.ndarray, labels: np.ndarray, sharpness: float = 1000.0
    ) -> None:
        """Generator whose every sample is one of `images` of the requested class, picked by
        the noise (a near one-hot softmax over a fixed projection of it): a generator that
        draws from the real distribution of those images, uniformly."""
        import keras

        from models.gan import pixels_to_tanh

        size = int(np.prod(IMAGE_SHAPE))
        per_class = int(np.bincount(labels).min())
        table = np.stack(
            [
                pixels_to_tanh(images[labels == label][:per_class].astype(np.float32)).ravel()
                for label in range(len(CLASSES))
            ]
        )
        noise = keras.Input((LATENT_DIM,), name="noise", dtype="float32")
        label = keras.Input((1,), name="label", dtype="int32")
        drawings = keras.layers.Embedding(len(CLASSES), per_class * size, weights=[table])(label)
        drawings = keras.layers.Reshape((per_class, size))(drawings)
        pick = keras.layers.Dense(per_class, use_bias=False, name="pick")
        choice = keras.layers.Softmax()(keras.layers.Rescaling(sharpness)(pick(noise)))
        image = keras.layers.Dot(axes=1)([choice, drawings])
        model = keras.Model([noise, label], keras.layers.Reshape(IMAGE_SHAPE)(image))
        # Directions evenly spread on a circle in the first two noise dimensions: standard
        # normal noise falls in each one's sector equally often, so every image is drawn alike.
        angles = 2 * np.pi * np.arange(per_class) / per_class
        kernel = np.zeros((LATENT_DIM, per_class), np.float32)
        kernel[0], kernel[1] = np.cos(angles), np.sin(angles)
        pick.set_weights([kernel])
        model.save(path)

    def train_gan(
        self,
        root: Path,
        noise_weight: float = 0.0,
        copy_test: bool = False,
        evaluate: dict | None = None,
        sharpness: float = 1000.0,
    ) -> dict:
        """Replace the run's generator and score it with the run's CNN, as evaluate@gan would:
        one drawing per class (collapsed), or copies of the test images (`copy_test`)."""
        import keras

        from tasks.evaluate import score_generator
        from tasks.params import EvaluateParams
        from tasks.prepare import load_splits

        directory = model_dir("gan", root)
        splits = load_splits(root / SPLITS_FILE)
        if copy_test:
            self.save_copying_generator(
                directory / GENERATOR_FILE, splits.x["test"], splits.y["test"], sharpness
            )
        else:
            self.save_generator(directory / GENERATOR_FILE, noise_weight)
        metrics = score_generator(
            keras.models.load_model(directory / GENERATOR_FILE, safe_mode=True),
            keras.models.load_model(model_file("cnn", root), safe_mode=True),
            (splits.x["train"], splits.y["train"]),
            (splits.x["test"], splits.y["test"]),
            CLASSES,
            EvaluateParams(**(evaluate or PARAMS["evaluate"])),
            PARAMS["seed"],
        )
        write_metrics(metrics, model_metrics_file("gan", root))
        return metrics


@pytest.fixture
def exact_models() -> ExactModels:
    return ExactModels()


@pytest.fixture
def register_cnn(fake_repo: FakeRepo) -> Callable[[Path], Any]:
    """register_cnn(root): register only the CNN with root/params.yaml; its entry."""
    from tasks.register import register_models

    def register(root: Path) -> Any:
        (entry,) = register_models(root, fake_repo.stage_params(root), models=["cnn"])
        return entry

    return register
