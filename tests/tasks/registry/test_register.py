"""The register stage: MLflow runs, registry versions with lineage tags, idempotency, CLI errors.

Every test uses its own sqlite store and working directory under tmp_path, and a fake repository
root (conftest.py) holding tiny Keras models plus the JSON files the earlier stages would have
written.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tasks.paths import REGISTRY_REPORT, VALIDATION_METRICS, model_dir
from tasks.register import main, register_models
from tasks.registry import lineage
from tasks.registry.tags import PIPELINE_RUN
from tasks.validation.report import CheckResult, ValidationReport, write_report

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


def test_registers_three_versions_with_lineage_tags(registered, fake_repo) -> None:
    root, results, client, _ = registered
    assert [entry.model for entry in results] == ["cnn", "rnn", "gan"]
    by_model = {entry.model: entry for entry in results}
    assert by_model["cnn"].headline_metric == "test_accuracy"
    assert by_model["gan"].headline_metric == "diversity_score"
    assert by_model["gan"].headline_value == pytest.approx(0.75)
    pipeline_runs = set()
    for entry in results:
        assert (entry.registered_name, entry.version, entry.reused) == (
            f"{fake_repo.dataset}-{entry.model}",
            "1",
            False,
        )
        version = client.get_model_version(entry.registered_name, "1")
        assert set(version.tags) >= VERSION_TAGS
        assert version.run_id == entry.run_id
        assert version.tags["data_version"] == fake_repo.data_md5
        assert version.tags["model_md5"] == lineage.dir_md5(model_dir(entry.model, root))
        assert version.tags["validation"] == "passed"
        assert json.loads(version.tags["params"]) == fake_repo.params["train"][entry.model]
        assert version.tags["params_hash"] == lineage.params_hash(
            fake_repo.params["train"][entry.model]
        )
        assert f"dvc checkout data.dvc (data md5 {fake_repo.data_md5})" in version.description
        pipeline_runs.add(version.tags["pipeline_run"])
    assert len(pipeline_runs) == 1


def test_parent_run_has_three_nested_runs_sharing_the_pipeline_tag(registered, fake_repo) -> None:
    _, results, client, _ = registered
    experiment = client.get_experiment_by_name(fake_repo.params["register"]["experiment"])
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert len(parents) == 1 and len(runs) == 4
    parent = parents[0]
    assert parent.info.run_name.startswith(f"pipeline-{fake_repo.dataset}-")
    assert parent.data.tags["data_version"] == fake_repo.data_md5
    assert parent.data.tags["dataset"] == fake_repo.dataset
    assert parent.data.tags["git_commit"]
    assert parent.data.metrics["validation.success"] == 1.0
    assert parent.data.metrics["validation.checks.class_kl.observed"] == 0.01
    parent_files = [item.path for item in client.list_artifacts(parent.info.run_id, "validation")]
    assert parent_files == ["validation/validation.json"]
    children = [run for run in runs if run is not parent]
    assert {run.info.run_name for run in children} == {"cnn", "rnn", "gan"}
    assert {run.info.run_id for run in children} == {entry.run_id for entry in results}
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags[PIPELINE_RUN] == parent.data.tags[PIPELINE_RUN]


def test_nested_run_logs_params_metrics_history_and_artifacts(registered, fake_repo) -> None:
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
        assert sorted(point.step for point in history) == list(range(fake_repo.epochs[model]))
        assert [point.value for point in sorted(history, key=lambda p: p.step)] == (
            fake_repo.history(model)[key]
        )
    cnn_files = {item.path for item in client.list_artifacts(runs["cnn"].info.run_id)}
    assert {"class_weights.json", "plots", "record"} <= cnn_files
    gan_plots = client.list_artifacts(runs["gan"].info.run_id, "plots/images")
    assert [item.path for item in gan_plots] == ["plots/images/samples.png"]
    grids = client.list_artifacts(runs["gan"].info.run_id, "plots/training_samples")
    assert [item.path for item in grids] == ["plots/training_samples/epoch_005.png"]
    gan_files = {item.path for item in client.list_artifacts(runs["gan"].info.run_id)}
    assert "discriminator" in gan_files


def test_registered_models_load_and_predict_through_pyfunc(registered, fake_repo) -> None:
    import mlflow

    *_, uri = registered
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    batch = (
        np.random.default_rng(1)
        .integers(0, 256, size=(5, *fake_repo.image_shape))
        .astype(np.float32)
    )
    classifier = mlflow.pyfunc.load_model(f"models:/{fake_repo.dataset}-cnn/1")
    probabilities = np.asarray(classifier.predict(batch))
    assert probabilities.shape == (5, len(fake_repo.classes))
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)

    generator = mlflow.pyfunc.load_model(f"models:/{fake_repo.dataset}-gan/1")
    inputs = generator.metadata.get_input_schema().input_names()
    assert inputs == ["noise", "label"]
    images = generator.predict(
        {
            "noise": np.zeros((3, fake_repo.latent_dim), np.float32),
            "label": np.arange(3, dtype=np.int32)[:, None],
        }
    )
    assert np.asarray(images).shape == (3, *fake_repo.image_shape)


def test_second_run_with_unchanged_artifacts_registers_nothing(store, fake_repo, capsys) -> None:
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
        assert len(client.search_model_versions(f"name = '{fake_repo.dataset}-{model}'")) == 1
    runs_after = client.search_runs([client.get_experiment_by_name("imgflow-test").experiment_id])
    assert len(runs_after) == len(runs_before)


def test_changed_model_file_registers_only_that_model(store, fake_repo) -> None:
    import keras

    root, client = store
    register_models(root, fake_repo.stage_params(root))
    path = model_dir("cnn", root) / "model.keras"
    model = keras.models.load_model(path, safe_mode=True)
    model.set_weights([weights + 0.5 for weights in model.get_weights()])
    model.save(path)

    results = {entry.model: entry for entry in register_models(root, fake_repo.stage_params(root))}
    assert (results["cnn"].reused, results["cnn"].version) == (False, "2")
    assert (results["rnn"].reused, results["rnn"].version) == (True, "1")
    assert (results["gan"].reused, results["gan"].version) == (True, "1")
    new = client.get_model_version(f"{fake_repo.dataset}-cnn", "2")
    assert new.tags["model_md5"] == lineage.dir_md5(model_dir("cnn", root))
    assert new.run_id == results["cnn"].run_id


def test_missing_metrics_file_fails_naming_file_and_stage(store, fake_repo, capsys) -> None:
    root, client = store
    (root / "metrics/cnn.json").unlink()
    assert main(["--root", str(root)]) == 1
    error = capsys.readouterr().err
    assert "metrics/cnn.json" in error
    assert "dvc repro evaluate@cnn" in error
    assert list(client.search_registered_models()) == []
    assert not (root / REGISTRY_REPORT).exists()


def test_failed_validation_is_not_registered(store, fake_repo, capsys) -> None:
    root, _ = store
    decodes = CheckResult("decodes", False, 2, "0 files that fail to decode", "error")
    write_report(ValidationReport([decodes]), root / VALIDATION_METRICS)
    assert main(["--root", str(root)]) == 1
    assert "validation did not pass" in capsys.readouterr().err


def test_bad_threshold_fails_naming_its_key_before_mlflow_is_touched(
    store, fake_repo, capsys
) -> None:
    root, client = store
    bad = fake_repo.params
    bad["register"]["thresholds"]["cnn"] = {"test_accuracy": 0.9}
    (root / "params.yaml").write_text(json.dumps(bad))
    assert main(["--root", str(root)]) == 1
    assert "params.yaml: register.thresholds.cnn.test_accuracy" in capsys.readouterr().err
    assert list(client.search_registered_models()) == []
    assert client.get_experiment_by_name("imgflow-test") is None


def test_unknown_model_is_refused(store, fake_repo) -> None:
    from tasks.registry.inputs import RegisterError

    root, _ = store
    with pytest.raises(RegisterError, match="unknown model 'vit'"):
        register_models(root, fake_repo.stage_params(root), models=["vit"])
