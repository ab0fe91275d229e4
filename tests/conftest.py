"""Shared fixtures: a temporary copy of the repository with tiny params, and isolated stores."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO_ROOT.parent / "shared" / "datasets" / "mnist-10k"
# What a clone of the repository holds (the pipeline's inputs), copied into a temp repo.
REPO_FILES = ("dvc.yaml", "params.yaml", "data.dvc", ".dvcignore", ".gitignore", "pyproject.toml")
REPO_DIRS = ("flows", "tasks", "models", ".dvc")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def tiny_params(params: dict) -> dict:
    """The repository's params with epochs and sizes cut so a full pipeline runs in ~a minute."""
    params = yaml.safe_load(yaml.safe_dump(params))
    params["train"]["cnn"].update(epochs=2, filters=[8, 16], dense_units=32)
    params["train"]["rnn"].update(epochs=2, lstm_units=[16])
    params["train"]["gan"].update(epochs=2, latent_dim=16, base_filters=8)
    params["evaluate"].update(gan_samples=100)
    return params


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=test@example.com", "-c", "user.name=test", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh git repo in tmp with the pipeline's code, tiny params, the digits data and its
    own MLflow store; the test runs with it as the working directory."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in REPO_FILES:
        shutil.copy2(REPO_ROOT / name, repo / name)
    for name in REPO_DIRS:
        shutil.copytree(
            REPO_ROOT / name,
            repo / name,
            ignore=shutil.ignore_patterns("__pycache__", "cache", "tmp", "*.lock"),
        )
    params = tiny_params(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    from tasks.ingest import ingest

    ingest("digits", None, repo / "data")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "test repo")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{repo / 'mlflow.db'}")
    monkeypatch.setenv("PYTHONPATH", str(repo))
    monkeypatch.setenv(
        "PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    return repo


def tree_digest(root: Path) -> str:
    """One hash over every file's relative path and bytes: "nothing in this folder changed"."""
    import hashlib

    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(root)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def registered_versions(tracking_uri: str) -> dict[str, list[str]]:
    """Registered model name -> its version numbers, read from an MLflow store."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    return {
        model.name: sorted(
            str(v.version) for v in client.search_model_versions(f"name='{model.name}'")
        )
        for model in client.search_registered_models()
    }
