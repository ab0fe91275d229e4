"""`dvc repro` in a temporary copy of the repository: the real stages, tiny epochs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.pipeline


def dvc(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def test_dvc_repro_trains_registers_and_reruns_only_what_changed(
    repo_copy: Path, registered_versions: Callable[[str], dict[str, list[str]]]
) -> None:
    first = dvc("repro")
    assert stages_run(first) == {
        "prepare",
        "validate",
        "train@cnn",
        "train@rnn",
        "train@gan",
        "evaluate@cnn",
        "evaluate@rnn",
        "evaluate@gan",
        "register",
    }
    versions = registered_versions(os.environ["MLFLOW_TRACKING_URI"])
    assert versions == {"digits-cnn": ["1"], "digits-rnn": ["1"], "digits-gan": ["1"]}
    registry = json.loads(Path("reports/registry.json").read_text())
    for model in ("cnn", "rnn"):
        metrics = json.loads(Path(f"metrics/{model}.json").read_text())
        # What register logged and reported is exactly what evaluate wrote.
        entry = next(item for item in registry if item["model"] == model)
        assert entry["headline_value"] == metrics[entry["headline_metric"]]
        # The confusion matrix plot covers every test image once.
        confusion = Path(f"plots/confusion/{model}.csv").read_text().splitlines()
        assert len(confusion) - 1 == metrics["test_images"]
    gan = json.loads(Path("metrics/gan.json").read_text())
    assert {"recognisable_share", "classes_covered", "frechet_distance"} <= gan.keys()
    assert "Data and pipelines are up to date" in dvc("status")
    assert stages_run(dvc("repro")) == set()

    params = yaml.safe_load(Path("params.yaml").read_text())
    params["train"]["cnn"]["dense_units"] = 24
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rerun = stages_run(dvc("repro"))
    # The GAN is scored by the CNN, so its evaluation follows the CNN; nothing else re-runs.
    assert rerun == {"train@cnn", "evaluate@cnn", "evaluate@gan", "register"}
    versions = registered_versions(os.environ["MLFLOW_TRACKING_URI"])
    assert versions == {"digits-cnn": ["1", "2"], "digits-rnn": ["1"], "digits-gan": ["1"]}
