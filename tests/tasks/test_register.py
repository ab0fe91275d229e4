"""Register step: MLflow runs, registry versions with lineage tags, idempotency, CLI errors.

Every test uses its own sqlite store and working directory under tmp_path, and a fake repository
root holding tiny Keras models plus the JSON files the earlier stages would have written.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tasks import lineage
from tasks.paths import REGISTRY_REPORT, model_dir
from tasks.register import (
    PIPELINE_TAG,
    RegisteredModel,
    format_table,
    main,
    register_models,
    write_registry_report,
)

DATASET = "digits"
IMAGE_SHAPE = (8, 8, 1)
CLASSES = [str(digit) for digit in range(10)]
LATENT_DIM = 4
EPOCHS = {"cnn": 3, "rnn": 2, "gan": 4}
VERSION_TAGS = {
    "data_version",
    "git_commit",
    "params_hash",
    "params",
    "model_md5",
    "validation",
    "class_weights",
    "pipeline_run",
    "gate.decision",
    "gate.reason",
    "gate.metric",
    "gate.challenger_score",
    "gate.champion_score",
}
PARAMS: dict[str, Any] = {
    "seed": 42,
    "prepare": {"val_fraction": 0.1, "test_fraction": 0.1},
    "train": {
        "deterministic": False,
        "cnn": {"epochs": 3, "batch_size": 8, "filters": [2], "dropout": 0.1},
        "rnn": {"epochs": 2, "batch_size": 8, "lstm_units": [4]},
        "gan": {"epochs": 4, "batch_size": 8, "latent_dim": LATENT_DIM},
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
}
DATA_MD5 = "0123456789abcdef0123456789abcdef.dir"


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny untrained models built once per module."""
    return save_tiny_models(tmp_path_factory.mktemp("keras"))


def save_tiny_models(out: Path) -> Path:
    """cnn/rnn classifiers and a two-input GAN generator + discriminator, built-in layers only."""
    import keras

    image = keras.Input(IMAGE_SHAPE)
    keras.Sequential(
        [
            image,
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(2, 3, activation="relu"),
            # The GAN's judge needs an "embedding" layer (tasks.evaluate.EMBEDDING_LAYER).
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


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def _history(model: str) -> dict[str, list[float]]:
    keys = ("d_loss", "g_loss") if model == "gan" else ("loss", "val_loss", "accuracy")
    return {key: [1.0 / (epoch + 1) for epoch in range(EPOCHS[model])] for key in keys}


def write_splits(root: Path, per_class: int = 3) -> None:
    """splits.npz as prepare writes it: class k images have pixel k bright, the rest dim."""
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "val", "test"):
        labels = np.repeat(np.arange(len(CLASSES)), per_class)
        images = rng.integers(0, 40, size=(len(labels), *IMAGE_SHAPE)).astype(np.uint8)
        flat = images.reshape(len(labels), -1)
        flat[np.arange(len(labels)), labels] = 255
        arrays |= {
            f"x_{split}": flat.reshape(images.shape),
            f"y_{split}": labels.astype(np.int64),
            f"paths_{split}": np.array([f"{split}/{i}.png" for i in range(len(labels))]),
        }
    path = root / "artifacts/prepared/splits.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def build_root(root: Path, keras_files: Path) -> Path:
    """A repository root as `dvc repro evaluate` would leave it (plots included)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.dvc").write_text(
        yaml.safe_dump(
            {"outs": [{"md5": DATA_MD5, "size": 1, "nfiles": 1, "hash": "md5", "path": "data"}]}
        )
    )
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    _write_json(
        root / "artifacts/prepared/meta.json",
        {"name": DATASET, "class_names": CLASSES, "image_shape": list(IMAGE_SHAPE)},
    )
    write_splits(root)
    _write_json(
        root / "metrics/validation.json",
        {
            "success": True,
            "checks": [{"name": "class_balance", "success": True, "kl_divergence": 0.01}],
            "class_weights": {"0": 1.0},
        },
    )
    for model in ("cnn", "rnn", "gan"):
        directory = model_dir(model, root)
        directory.mkdir(parents=True)
        if model == "gan":
            for name in ("generator.keras", "discriminator.keras"):
                shutil.copy(keras_files / name, directory / name)
            metrics = {"recognisable_share": 0.8, "classes_covered": 10, "frechet_distance": 12.3}
        else:
            shutil.copy(keras_files / f"{model}.keras", directory / "model.keras")
            metrics = {"test_accuracy": 0.9, "test_loss": 0.3, "macro_f1": 0.88}
        _write_json(
            directory / "train.json",
            {
                "model": model,
                "params": PARAMS["train"][model],
                "epochs_run": EPOCHS[model],
                "best_epoch": EPOCHS[model] - 1,
                "train_seconds": 1.5,
                "images_per_second": 1000.0,
                "class_weights": {"0": 1.1, "1": 0.9} if model == "cnn" else None,
                "history": _history(model),
            },
        )
        _write_json(root / "metrics" / f"{model}.json", metrics)
        (root / "plots/history").mkdir(parents=True, exist_ok=True)
        (root / "plots/history" / f"{model}.csv").write_text("epoch,loss\n0,1.0\n")
    (root / "plots/images/gan").mkdir(parents=True)
    (root / "plots/images/gan/samples.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (model_dir("gan", root) / "samples").mkdir()
    (model_dir("gan", root) / "samples/epoch_005.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return root


def _use_store(monkeypatch: pytest.MonkeyPatch, workdir: Path) -> str:
    uri = f"sqlite:///{workdir}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(workdir)
    return uri


@pytest.fixture(autouse=True)
def _reset_mlflow_uris():
    """register sets MLflow's process-global URIs; clear them so no test sees another's store."""
    yield
    import mlflow

    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keras_files: Path):
    """(repo root, MlflowClient on a fresh store) for tests that register themselves."""
    from mlflow import MlflowClient

    uri = _use_store(monkeypatch, tmp_path)
    root = build_root(tmp_path / "repo", keras_files)
    return root, MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory, keras_files: Path):
    """One registration of all three models, shared by the read-only tests."""
    from mlflow import MlflowClient

    workdir = tmp_path_factory.mktemp("registered")
    with pytest.MonkeyPatch.context() as monkeypatch:
        uri = _use_store(monkeypatch, workdir)
        root = build_root(workdir / "repo", keras_files)
        results = register_models(root, PARAMS)
        yield root, results, MlflowClient(tracking_uri=uri, registry_uri=uri), uri


def test_registers_three_versions_with_lineage_tags(registered) -> None:
    root, results, client, _ = registered
    assert [entry.model for entry in results] == ["cnn", "rnn", "gan"]
    by_model = {entry.model: entry for entry in results}
    assert by_model["cnn"].headline_metric == "test_accuracy"
    assert by_model["gan"].headline_metric == "recognisable_share"
    assert by_model["gan"].headline_value == pytest.approx(0.8)
    pipeline_runs = set()
    for entry in results:
        assert (entry.registered_name, entry.version, entry.reused) == (
            f"{DATASET}-{entry.model}",
            "1",
            False,
        )
        version = client.get_model_version(entry.registered_name, "1")
        assert set(version.tags) >= VERSION_TAGS
        assert version.run_id == entry.run_id
        assert version.tags["data_version"] == DATA_MD5
        assert version.tags["model_md5"] == lineage.dir_md5(model_dir(entry.model, root))
        assert version.tags["validation"] == "passed"
        assert json.loads(version.tags["params"]) == PARAMS["train"][entry.model]
        assert version.tags["params_hash"] == lineage.params_hash(PARAMS["train"][entry.model])
        assert f"dvc checkout data.dvc (data md5 {DATA_MD5})" in version.description
        pipeline_runs.add(version.tags["pipeline_run"])
    assert len(pipeline_runs) == 1


def test_parent_run_has_three_nested_runs_sharing_the_pipeline_tag(registered) -> None:
    _, results, client, _ = registered
    experiment = client.get_experiment_by_name(PARAMS["register"]["experiment"])
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert len(parents) == 1 and len(runs) == 4
    parent = parents[0]
    assert parent.info.run_name.startswith(f"pipeline-{DATASET}-")
    assert parent.data.tags["data_version"] == DATA_MD5
    assert parent.data.tags["dataset"] == DATASET
    assert parent.data.tags["git_commit"]
    assert parent.data.metrics["validation.success"] == 1.0
    assert parent.data.metrics["validation.checks.class_balance.kl_divergence"] == 0.01
    parent_files = [item.path for item in client.list_artifacts(parent.info.run_id, "validation")]
    assert parent_files == ["validation/validation.json"]
    children = [run for run in runs if run is not parent]
    assert {run.info.run_name for run in children} == {"cnn", "rnn", "gan"}
    assert {run.info.run_id for run in children} == {entry.run_id for entry in results}
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags[PIPELINE_TAG] == parent.data.tags[PIPELINE_TAG]


def test_nested_run_logs_params_metrics_history_and_artifacts(registered) -> None:
    _, results, client, _ = registered
    runs = {entry.model: client.get_run(entry.run_id) for entry in results}
    cnn = runs["cnn"].data
    assert cnn.params["epochs"] == "3"
    assert cnn.params["filters"] == "[2]"
    assert cnn.params["seed"] == "42"
    assert cnn.params["prepare.val_fraction"] == "0.1"
    assert cnn.params["train.deterministic"] == "false"
    assert "train.cnn.epochs" not in cnn.params
    assert cnn.params["class_weights_used"] == "true"
    assert runs["rnn"].data.params["class_weights_used"] == "false"
    assert cnn.metrics["test_accuracy"] == pytest.approx(0.9)
    assert cnn.metrics["epochs_run"] == 3
    assert runs["gan"].data.metrics["frechet_distance"] == pytest.approx(12.3)
    for model, run in runs.items():
        key = "g_loss" if model == "gan" else "val_loss"
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(point.step for point in history) == list(range(EPOCHS[model]))
        assert [point.value for point in sorted(history, key=lambda p: p.step)] == (
            _history(model)[key]
        )
    cnn_files = {item.path for item in client.list_artifacts(runs["cnn"].info.run_id)}
    assert {"class_weights.json", "plots", "record"} <= cnn_files
    gan_plots = client.list_artifacts(runs["gan"].info.run_id, "plots/images")
    assert [item.path for item in gan_plots] == ["plots/images/samples.png"]
    grids = client.list_artifacts(runs["gan"].info.run_id, "plots/training_samples")
    assert [item.path for item in grids] == ["plots/training_samples/epoch_005.png"]
    gan_files = {item.path for item in client.list_artifacts(runs["gan"].info.run_id)}
    assert "discriminator" in gan_files


def test_registered_models_load_and_predict_through_pyfunc(registered) -> None:
    import mlflow

    *_, uri = registered
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    batch = np.random.default_rng(1).integers(0, 256, size=(5, *IMAGE_SHAPE)).astype(np.float32)
    classifier = mlflow.pyfunc.load_model(f"models:/{DATASET}-cnn/1")
    probabilities = np.asarray(classifier.predict(batch))
    assert probabilities.shape == (5, len(CLASSES))
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)

    generator = mlflow.pyfunc.load_model(f"models:/{DATASET}-gan/1")
    inputs = generator.metadata.get_input_schema().input_names()
    assert inputs == ["noise", "label"]
    images = generator.predict(
        {
            "noise": np.zeros((3, LATENT_DIM), np.float32),
            "label": np.arange(3, dtype=np.int32)[:, None],
        }
    )
    assert np.asarray(images).shape == (3, *IMAGE_SHAPE)


def test_second_run_with_unchanged_artifacts_registers_nothing(store, capsys) -> None:
    root, client = store
    assert main(["--root", str(root)]) == 0
    first = json.loads((root / REGISTRY_REPORT).read_text())
    assert [entry["reused"] for entry in first] == [False, False, False]
    runs_before = client.search_runs([client.get_experiment_by_name("imgflow-test").experiment_id])
    capsys.readouterr()

    assert main(["--root", str(root)]) == 0
    assert capsys.readouterr().out.count("unchanged") == 3
    second = json.loads((root / REGISTRY_REPORT).read_text())
    assert [entry["reused"] for entry in second] == [True, True, True]
    assert [(e["run_id"], e["version"]) for e in second] == [
        (e["run_id"], e["version"]) for e in first
    ]
    assert [e["headline_value"] for e in second] == [e["headline_value"] for e in first]
    for model in ("cnn", "rnn", "gan"):
        assert len(client.search_model_versions(f"name = '{DATASET}-{model}'")) == 1
    runs_after = client.search_runs([client.get_experiment_by_name("imgflow-test").experiment_id])
    assert len(runs_after) == len(runs_before)


def test_changed_model_file_registers_only_that_model(store) -> None:
    import keras

    root, client = store
    register_models(root, PARAMS)
    path = model_dir("cnn", root) / "model.keras"
    model = keras.models.load_model(path, safe_mode=True)
    model.set_weights([weights + 0.5 for weights in model.get_weights()])
    model.save(path)

    results = {entry.model: entry for entry in register_models(root, PARAMS)}
    assert (results["cnn"].reused, results["cnn"].version) == (False, "2")
    assert (results["rnn"].reused, results["rnn"].version) == (True, "1")
    assert (results["gan"].reused, results["gan"].version) == (True, "1")
    new = client.get_model_version(f"{DATASET}-cnn", "2")
    assert new.tags["model_md5"] == lineage.dir_md5(model_dir("cnn", root))
    assert new.run_id == results["cnn"].run_id


def test_missing_metrics_file_fails_naming_file_and_stage(store, capsys) -> None:
    root, client = store
    (root / "metrics/cnn.json").unlink()
    assert main(["--root", str(root)]) == 1
    error = capsys.readouterr().err
    assert "metrics/cnn.json" in error
    assert "dvc repro evaluate@cnn" in error
    assert list(client.search_registered_models()) == []
    assert not (root / REGISTRY_REPORT).exists()


def test_failed_validation_is_not_registered(store, capsys) -> None:
    root, _ = store
    _write_json(root / "metrics/validation.json", {"success": False, "checks": []})
    assert main(["--root", str(root)]) == 1
    assert "validation did not pass" in capsys.readouterr().err


def test_report_and_table(tmp_path: Path) -> None:
    entries = [
        RegisteredModel("cnn", "digits-cnn", "2", "abc123", "test_accuracy", 0.97, False),
        RegisteredModel(
            "gan",
            "digits-gan",
            "1",
            "def456",
            "recognisable_share",
            0.8,
            True,
            decision="rejected",
            reason="worse",
            champion_version="3",
            champion_score=0.9,
            judge="digits-cnn v4 (champion)",
        ),
    ]
    path = tmp_path / "reports" / "registry.json"
    write_registry_report(entries, path)
    assert json.loads(path.read_text())[1] == {
        "model": "gan",
        "registered_name": "digits-gan",
        "version": "1",
        "run_id": "def456",
        "headline_metric": "recognisable_share",
        "headline_value": 0.8,
        "reused": True,
        "decision": "rejected",
        "reason": "worse",
        "champion_version": "3",
        "champion_score": 0.9,
        "metrics": {},
        "champion_metrics": {},
        "judge": "digits-cnn v4 (champion)",
    }
    assert [item.name for item in path.parent.iterdir()] == ["registry.json"]
    lines = format_table(entries).splitlines()
    assert len(lines) == 3
    assert lines[1].split() == [
        "cnn",
        "test_accuracy",
        "0.9700",
        "abc123",
        "digits-cnn",
        "2",
        "new",
        "-",
        "-",
    ]
    assert lines[2].split()[-4:] == ["unchanged", "v3", "0.9000", "rejected"]
    assert lines[0].index("mlflow run") == lines[1].index("abc123")


def test_git_commit_outside_git_is_unknown(tmp_path: Path) -> None:
    assert lineage.git_commit(tmp_path) == "unknown"


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_commit_marks_tracked_changes_dirty(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
        )

    git("init", "-q")
    (tmp_path / "file.txt").write_text("a")
    git("add", "file.txt")
    git("commit", "-q", "-m", "init")
    sha = lineage.git_commit(tmp_path)
    assert len(sha) == 40
    (tmp_path / "untracked.txt").write_text("ignored")
    assert lineage.git_commit(tmp_path) == sha
    (tmp_path / "file.txt").write_text("b")
    assert lineage.git_commit(tmp_path) == f"{sha}-dirty"


def test_data_version_and_hashes(tmp_path: Path) -> None:
    with pytest.raises(lineage.LineageError, match=r"data\.dvc"):
        lineage.data_version(tmp_path)
    (tmp_path / "data.dvc").write_text(yaml.safe_dump({"outs": [{"md5": DATA_MD5}]}))
    assert lineage.data_version(tmp_path) == DATA_MD5
    assert lineage.params_hash({"b": 1, "a": [1, 2]}) == lineage.params_hash({"a": [1, 2], "b": 1})
    assert len(lineage.params_hash({})) == 12
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.keras").write_bytes(b"x")
    before = lineage.dir_md5(folder)
    assert before.endswith(".dir")
    (folder / "model.keras").write_bytes(b"y")
    assert lineage.dir_md5(folder) != before
    assert lineage.file_md5(folder / "model.keras") == "415290769594460e2e485922904f345d"
