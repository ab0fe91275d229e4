"""Promotion gate, concurrency, rollback, lineage and the run report on tiny temp MLflow stores.

The classifiers here are exact by construction: test images of class k have pixel k bright, and
a Dense layer whose weight matrix maps pixel k to class k scores 100 %; mapping only some pixels
to their class gives a known lower accuracy. So "better" and "worse" are real re-scored facts.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from flows.cli import main as cli_main
from tasks.paths import model_dir
from tasks.promote import (
    CHAMPION,
    PromotionError,
    current_champion,
    decide,
    gate,
    rollback,
)
from tasks.register import RegisterError, load_keras_version, register_models
from tasks.run_report import REPORT_HTML, REPORT_MARKDOWN
from tests.tasks.test_register import (
    CLASSES,
    DATASET,
    IMAGE_SHAPE,
    PARAMS,
    _use_store,
    _write_json,
    build_root,
    save_tiny_models,
)

NAME = f"{DATASET}-cnn"
THRESHOLDS = {"test_accuracy": {"min": 0.5}}


@pytest.fixture(autouse=True)
def _reset_mlflow_uris():
    yield
    import mlflow

    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_models(tmp_path_factory.mktemp("keras"))


def save_classifier(path: Path, correct: int, scale: float = 20.0) -> None:
    """Dense classifier mapping pixel k -> class k for the first `correct` classes, k+1 else."""
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


def train_cnn(root: Path, correct: int, scale: float = 20.0) -> dict:
    """Replace the run's CNN and write its real metrics, as train@cnn + evaluate@cnn would."""
    import keras

    from tasks.evaluate import score_classifier
    from tasks.prepare import load_splits

    path = model_dir("cnn", root) / "model.keras"
    save_classifier(path, correct, scale)
    splits = load_splits(root / "artifacts/prepared/splits.npz")
    metrics = score_classifier(
        keras.models.load_model(path, safe_mode=True),
        splits.x["test"],
        splits.y["test"],
        CLASSES,
    )
    _write_json(root / "metrics/cnn.json", metrics)
    return metrics


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keras_files: Path):
    from mlflow import MlflowClient

    uri = _use_store(monkeypatch, tmp_path)
    root = build_root(tmp_path / "repo", keras_files)
    return root, MlflowClient(tracking_uri=uri, registry_uri=uri)


def register_cnn(root: Path, params: dict = PARAMS):
    (entry,) = register_models(root, params, models=["cnn"])
    return entry


def test_decide_thresholds_then_tolerance() -> None:
    kwargs = {"metric": "acc", "thresholds": {"acc": {"min": 0.8}}, "tolerance": 0.02}
    first = decide({"acc": 0.9}, None, champion_version=None, **kwargs)
    assert first.promote and "no champion yet" in first.reason
    low = decide({"acc": 0.7}, None, champion_version=None, **kwargs)
    assert not low.promote and "acc 0.7000 < min 0.8" in low.reason
    within = decide({"acc": 0.89}, {"acc": 0.905}, champion_version="3", **kwargs)
    assert within.promote and within.difference == pytest.approx(-0.015)
    worse = decide({"acc": 0.85}, {"acc": 0.9}, champion_version="3", **kwargs)
    assert not worse.promote and "worse than champion v3" in worse.reason
    assert worse.tags()["gate.champion_score"] == "0.900000"
    missing = decide({"acc": 0.9}, None, champion_version=None, metric="acc",
                     thresholds={"ece": {"max": 0.1}}, tolerance=0.0)  # fmt: skip
    assert not missing.promote and "ece missing" in missing.reason
    with pytest.raises(PromotionError, match="tolerance"):
        decide({"acc": 0.9}, None, champion_version=None, **{**kwargs, "tolerance": -1})


def test_worse_challenger_is_registered_not_promoted_and_better_one_is(store) -> None:
    root, client = store
    train_cnn(root, correct=10)
    first = register_cnn(root)
    assert (first.version, first.decision, first.champion_version) == ("1", "promoted", None)
    assert current_champion(client, NAME) == "1"

    train_cnn(root, correct=6)  # 60 %: passes the 0.5 threshold, but 40 points below v1
    worse = register_cnn(root)
    assert (worse.version, worse.decision) == ("2", "rejected")
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == "2"
    assert current_champion(client, NAME) == "1"
    tags = client.get_model_version(NAME, "2").tags
    assert tags["gate.champion_version"] == "1"
    # The champion was re-scored on this split: its score is measured, not copied.
    assert float(tags["gate.champion_score"]) == pytest.approx(1.0)
    assert float(tags["gate.challenger_score"]) == pytest.approx(0.6)
    assert "worse than champion v1" in tags["gate.reason"]
    assert worse.champion_metrics["macro_f1"] == pytest.approx(1.0)

    train_cnn(root, correct=10, scale=25.0)  # as good as v1 (a different file)
    better = register_cnn(root)
    assert (better.version, better.decision) == ("3", "promoted")
    assert current_champion(client, NAME) == "3"

    report = (root / REPORT_MARKDOWN).read_text()
    assert "## Gate decisions" in report and "PROMOTED" in report
    assert "| test_accuracy | 1.0000 | 1.0000 | +0.0000 | higher |" in report
    html = (root / REPORT_HTML).read_text()
    assert "<table>" in html and "PROMOTED" in html
    parent = client.get_run(client.get_run(better.run_id).data.tags["mlflow.parentRunId"])
    logged = [item.path for item in client.list_artifacts(parent.info.run_id, "report")]
    assert logged == ["report/run_report.html", "report/run_report.md"]


def test_threshold_failure_without_champion_rejects_and_bad_params_move_nothing(store) -> None:
    root, client = store
    train_cnn(root, correct=4)
    entry = register_cnn(root)
    assert entry.decision == "rejected" and "test_accuracy 0.4000 < min 0.5" in entry.reason
    assert current_champion(client, NAME) is None

    bad = json.loads(json.dumps(PARAMS))
    bad["register"]["thresholds"]["cnn"] = {"test_accuracy": 0.9}
    train_cnn(root, correct=10)
    with pytest.raises(RegisterError, match=r"register\.thresholds\.cnn\.test_accuracy"):
        register_cnn(root, bad)
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 1
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == "1"


def test_champion_that_cannot_be_rescored_keeps_its_alias(store) -> None:
    root, client = store
    train_cnn(root, correct=10)
    register_cnn(root)
    decision = gate(
        client,
        NAME,
        "1",
        {"test_accuracy": 1.0},
        metric="test_accuracy",
        thresholds=THRESHOLDS,
        tolerance=0.0,
        score_champion=lambda version: {},
    )
    assert decision.promote  # comparing a version with itself: nothing to re-score
    train_cnn(root, correct=10, scale=30.0)
    entry = register_cnn(root)
    assert entry.decision == "promoted"

    def broken(version: str) -> dict:
        raise OSError("artifact store unreachable")

    decision = gate(
        client,
        NAME,
        "1",
        {"test_accuracy": 1.0},
        metric="test_accuracy",
        thresholds=THRESHOLDS,
        tolerance=0.0,
        score_champion=broken,
    )
    assert not decision.promote and "could not be re-scored" in decision.reason
    assert current_champion(client, NAME) == "2"


def save_exact_generator(path: Path, noise_weight: float = 0.0) -> None:
    """Generator that draws class k as pixel k bright (tanh +1) on a dark (-1) background: every
    sample is recognisable to an exact classifier and mostly misread by a weak one."""
    import keras

    size = int(np.prod(IMAGE_SHAPE))
    noise = keras.Input((4,), name="noise", dtype="float32")
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


def train_gan(root: Path, noise_weight: float = 0.0) -> dict:
    """Replace the run's generator and score it with the run's CNN, as evaluate@gan would."""
    import keras

    from tasks.evaluate import score_generator
    from tasks.prepare import load_splits

    directory = model_dir("gan", root)
    save_exact_generator(directory / "generator.keras", noise_weight)
    splits = load_splits(root / "artifacts/prepared/splits.npz")
    metrics = score_generator(
        keras.models.load_model(directory / "generator.keras", safe_mode=True),
        keras.models.load_model(model_dir("cnn", root) / "model.keras", safe_mode=True),
        splits.x["train"],
        splits.x["test"],
        CLASSES,
        PARAMS["evaluate"],
        PARAMS["seed"],
    )
    _write_json(root / "metrics/gan.json", metrics)
    return metrics


def test_gan_is_judged_by_the_champion_cnn_not_a_weak_new_one(store) -> None:
    """A weak new CNN must not decide the GAN's fate: both generators are scored by the champion
    CNN, so an unchanged-quality GAN stays promotable while the weak CNN is rejected."""
    root, client = store
    train_cnn(root, correct=10)
    assert train_gan(root)["recognisable_share"] == pytest.approx(1.0)
    cnn, gan = register_models(root, PARAMS, models=["cnn", "gan"])
    assert (cnn.decision, gan.decision) == ("promoted", "promoted")
    # This run's CNN went through its gate first and is now the champion: it judges.
    assert gan.judge == f"{DATASET}-cnn v1 (champion, this run's CNN)"

    train_cnn(root, correct=1)  # 10 %: fails the CNN threshold, and misreads 9 of 10 classes
    run_judged = train_gan(root, noise_weight=1e-6)  # a new generator file, same drawings
    assert run_judged["recognisable_share"] == pytest.approx(0.1)
    cnn, gan = register_models(root, PARAMS, models=["cnn", "gan"])
    assert (cnn.version, cnn.decision) == ("2", "rejected")
    assert (gan.version, gan.decision, gan.champion_version) == ("2", "promoted", "1")
    assert gan.judge == f"{DATASET}-cnn v1 (champion)"
    assert gan.headline_value == pytest.approx(1.0)
    assert gan.champion_score == pytest.approx(1.0)
    tags = client.get_model_version(f"{DATASET}-gan", "2").tags
    assert tags["gate.judge"] == f"{DATASET}-cnn v1 (champion)"
    assert float(tags["gate.challenger_score"]) == pytest.approx(1.0)
    # The evaluate step's own score (by the run's CNN) stays on record next to the gate's.
    logged = client.get_run(gan.run_id).data.metrics
    assert logged["recognisable_share"] == pytest.approx(0.1)
    assert logged["gate_recognisable_share"] == pytest.approx(1.0)
    report = (root / REPORT_MARKDOWN).read_text()
    assert f"judged by {DATASET}-cnn v1 (champion)" in report
    floor = next(line for line in report.splitlines() if line.startswith("| frechet_floor |"))
    assert floor.endswith("| reference |")  # the data's floor is neither better nor worse


def test_version_registered_before_a_crash_is_gated_on_the_next_run(store, monkeypatch) -> None:
    import tasks.register

    root, client = store
    train_cnn(root, correct=10)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed between registration and gate")

    with monkeypatch.context() as patch:
        patch.setattr(tasks.register, "_run_gate", crash)
        with pytest.raises(KeyboardInterrupt):
            register_cnn(root)
    assert current_champion(client, NAME) is None
    assert "gate.decision" not in client.get_model_version(NAME, "1").tags

    entry = register_cnn(root)  # same model file: no new version, but the gate now runs
    assert (entry.version, entry.decision) == ("1", "promoted")
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 1
    assert current_champion(client, NAME) == "1"


def test_concurrent_promotions_never_leave_champion_on_the_loser(tmp_path: Path) -> None:
    """Two runs finish at once; scoring is slow so both read "no champion" before either sets
    it. Whatever the interleaving, the better version must end as champion."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    scores = {"1": 0.95, "2": 0.90}  # version 1 wins; version 2 loses by more than tolerance
    for round_number in range(3):
        name = f"race-{round_number}"
        client.create_registered_model(name)
        for _ in scores:
            client.create_model_version(name, source=str(tmp_path), run_id=None)
        start = threading.Barrier(2)

        def slow_score(version: str) -> dict:
            time.sleep(0.3)
            return {"acc": scores[version]}

        def promote(version: str, name=name, start=start, round_number=round_number) -> None:
            start.wait()
            if version == "2" and round_number == 1:
                time.sleep(0.1)  # vary the interleaving between rounds
            gate(
                client,
                name,
                version,
                {"acc": scores[version]},
                metric="acc",
                thresholds={"acc": {"min": 0.5}},
                tolerance=0.01,
                score_champion=slow_score,
            )

        order = ["2", "1"] if round_number == 2 else ["1", "2"]
        threads = [threading.Thread(target=promote, args=(version,)) for version in order]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert current_champion(client, name) == "1", f"round {round_number}"
        loser = client.get_model_version(name, "2").tags
        # Either it was compared with the winner and rejected, or it was promoted first and
        # then beaten: it never stays champion.
        assert loser["gate.decision"] == "rejected" or (
            client.get_model_version(name, "1").tags["gate.champion_version"] == "2"
        )


RACE_SCRIPT = """
import sys, time
from pathlib import Path
from mlflow import MlflowClient
from tasks.promote import gate

uri, name, version, delay, barrier = sys.argv[1:]
scores = {"1": 0.95, "2": 0.90}
client = MlflowClient(tracking_uri=uri, registry_uri=uri)

def slow_score(champion):
    time.sleep(0.3)
    return {"acc": scores[champion]}

Path(barrier, version).touch()
while len(list(Path(barrier).iterdir())) < 2:  # both processes ready: start together
    time.sleep(0.01)
time.sleep(float(delay))
gate(client, name, version, {"acc": scores[version]}, metric="acc",
     thresholds={"acc": {"min": 0.5}}, tolerance=0.01, score_champion=slow_score)
"""


def test_concurrent_promotions_in_separate_processes(tmp_path: Path) -> None:
    """As two pipeline runs would: two OS processes gate versions of one model at once against
    one sqlite store. The file lock and compare-and-set must leave the better version champion."""
    import os
    import subprocess
    import sys

    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    repo = Path(__file__).resolve().parents[2]
    env = os.environ | {"PYTHONPATH": str(repo)}
    for round_number, delays in enumerate(({"1": 0, "2": 0}, {"1": 0.15, "2": 0})):
        name = f"process-race-{round_number}"
        client.create_registered_model(name)
        for _ in range(2):
            client.create_model_version(name, source=str(tmp_path), run_id=None)
        barrier = tmp_path / f"barrier-{round_number}"
        barrier.mkdir()
        processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    RACE_SCRIPT,
                    uri,
                    name,
                    version,
                    str(delays[version]),
                    str(barrier),
                ],
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
            for version in ("2", "1")
        ]
        for process in processes:
            _, errors = process.communicate(timeout=120)
            assert process.returncode == 0, errors
        assert current_champion(client, name) == "1", f"round {round_number}"
        loser = client.get_model_version(name, "2").tags
        assert loser["gate.decision"] == "rejected" or (
            client.get_model_version(name, "1").tags["gate.champion_version"] == "2"
        )


def test_rollback_to_previous_and_named_versions_via_cli(store, capsys) -> None:
    root, client = store
    for correct, scale in ((10, 20.0), (6, 20.0), (10, 25.0)):
        train_cnn(root, correct=correct, scale=scale)
        register_cnn(root)
    assert current_champion(client, NAME) == "3"  # v2 was rejected

    assert cli_main(["rollback", NAME, "--reason", "v3 misbehaves", "--user", "ops"]) == 0
    assert "champion v3 -> v1 by ops" in capsys.readouterr().out
    assert current_champion(client, NAME) == "1"
    tags = client.get_model_version(NAME, "1").tags
    assert (tags["rollback.by"], tags["rollback.reason"], tags["rollback.from"]) == (
        "ops",
        "v3 misbehaves",
        "3",
    )
    assert tags["rollback.at"].endswith("Z")

    assert cli_main(["rollback", NAME, "--version", "2", "--reason", "try v2"]) == 1
    assert "rejected by the gate" in capsys.readouterr().err
    assert current_champion(client, NAME) == "1"
    assert cli_main(["rollback", NAME, "--version", "2", "--reason", "try", "--force"]) == 0
    assert current_champion(client, NAME) == "2"
    assert client.get_model_version(NAME, "2").tags["rollback.forced"] == "true"
    assert cli_main(["rollback", NAME, "--version", "9", "--reason", "x"]) == 1
    assert "no version 9" in capsys.readouterr().err
    with pytest.raises(PromotionError, match="reason"):
        rollback(client, NAME, reason=" ")


def test_lineage_cli_prints_run_data_version_validation_and_commit(store, capsys) -> None:
    root, _ = store
    train_cnn(root, correct=10)
    entry = register_cnn(root)
    capsys.readouterr()
    assert cli_main(["lineage", NAME, "@champion"]) == 0
    out = capsys.readouterr().out
    assert f"{NAME} version 1 (aliases: challenger, champion)" in out
    assert f"MLflow run: {entry.run_id}" in out
    assert "epochs = 3" in out and "test_accuracy = 1" in out
    assert "val_loss: 3 epochs" in out
    assert "Data version (data.dvc md5): 0123456789abcdef0123456789abcdef.dir" in out
    assert "dvc checkout data.dvc" in out
    assert "class_balance: ok" in out  # the validation report of that data
    assert "Git commit: unknown" in out
    assert "Gate: promoted" in out
    assert cli_main(["lineage", NAME, "7"]) == 1
    assert "no version or alias '7'" in capsys.readouterr().err


def test_champion_loads_through_pyfunc_and_predicts_raw_images(store) -> None:
    import mlflow

    root, client = store
    train_cnn(root, correct=10)
    register_cnn(root)
    uri = client.tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    from tasks.prepare import load_splits

    splits = load_splits(root / "artifacts/prepared/splits.npz")
    raw = splits.x["test"].astype(np.float32)  # 0..255 pixels, no preprocessing
    champion = mlflow.pyfunc.load_model(f"models:/{NAME}@{CHAMPION}")
    predicted = np.asarray(champion.predict(raw)).argmax(axis=1)
    assert (predicted == splits.y["test"]).all()


def test_loading_refuses_models_that_would_run_code(tmp_path: Path, monkeypatch) -> None:
    """Keras safe mode: a Lambda layer (arbitrary Python) is not deserialised."""
    import keras
    import mlflow

    uri = _use_store(monkeypatch, tmp_path)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("safe-mode")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda x: x * 2)])
    with mlflow.start_run():
        info = mlflow.tensorflow.log_model(model, name="model", pip_requirements=["keras"])
    with pytest.raises(ValueError, match="safe_mode"):
        load_keras_version(info.model_uri)
    with pytest.raises(ValueError, match="safe_mode"):
        mlflow.pyfunc.load_model(info.model_uri)
