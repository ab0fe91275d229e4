"""Shared fixtures: a temporary copy of the repository with tiny params, isolated stores, image
files good and bad, and folder digests. Test modules take these as fixtures; none imports another
test module."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO_ROOT.parent / "shared" / "datasets" / "mnist-10k"
# What a clone of the repository holds (the pipeline's inputs), copied into a temp repo.
REPO_FILES = ("dvc.yaml", "params.yaml", "data.dvc", ".dvcignore", ".gitignore", "pyproject.toml")
REPO_DIRS = ("flows", "tasks", "models", ".dvc")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def mnist_dir() -> Path:
    """The shared MNIST-10k IDX files next to the repository; skips (saying why) without them."""
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST-10k IDX files not found at {MNIST_DIR} (shared/ is beside the repo)")
    return MNIST_DIR


def tiny_params(params: dict) -> dict:
    """The repository's params with epochs and sizes cut so a full pipeline runs in ~a minute."""
    params = yaml.safe_load(yaml.safe_dump(params))
    params["train"]["cnn"].update(epochs=2, filters=[8, 16], dense_units=32)
    params["train"]["rnn"].update(epochs=2, lstm_units=[16])
    params["train"]["gan"].update(epochs=2, latent_dim=16, base_filters=8)
    params["evaluate"].update(gan_samples=100)
    return params


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` as a test user (no global git identity needed); its stdout, stripped."""
    done = subprocess.run(
        ["git", "-c", "user.email=test@example.com", "-c", "user.name=test", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


@pytest.fixture(scope="session")
def run_git() -> Callable[..., str]:
    """`run_git(repo, *args)`: git as a test user, returning its stdout."""
    return git


def _build_repo(repo: Path, edit_params: Callable[[dict], None] | None = None) -> Path:
    """A git repo at `repo` with the pipeline's code, tiny params (then `edit_params`) and the
    digits data in data/, all committed (data/ is ignored by git, as in a real clone)."""
    repo.mkdir(parents=True)
    for name in REPO_FILES:
        shutil.copy2(REPO_ROOT / name, repo / name)
    for name in REPO_DIRS:
        shutil.copytree(
            REPO_ROOT / name,
            repo / name,
            ignore=shutil.ignore_patterns("__pycache__", "cache", "tmp", "*.lock", "config.local"),
        )
    params = tiny_params(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()))
    if edit_params is not None:
        edit_params(params)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    from tasks.ingest import ingest

    ingest("digits", None, repo / "data")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "test repo")
    return repo


@pytest.fixture
def build_repo() -> Callable[..., Path]:
    """`build_repo(path, edit_params=None)`: a repo like `repo_copy`'s, anywhere, no chdir."""
    return _build_repo


@pytest.fixture
def repo_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh git repo in tmp with the pipeline's code, tiny params, the digits data and its
    own MLflow store; the test runs with it as the working directory."""
    repo = _build_repo(tmp_path / "repo")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{repo / 'mlflow.db'}")
    monkeypatch.setenv("PYTHONPATH", str(repo))
    monkeypatch.setenv(
        "PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    return repo


def _tree_digest(root: Path) -> str:
    """One hash over every file's relative path and bytes: "nothing in this folder changed"."""
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(root)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def tree_digest() -> Callable[[Path], str]:
    """tree_digest(folder): one hash over every file's path and bytes below it."""
    return _tree_digest


def _registered_versions(tracking_uri: str) -> dict[str, list[str]]:
    """Registered model name -> its version numbers, read from an MLflow store."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    return {
        model.name: sorted(
            str(v.version) for v in client.search_model_versions(f"name='{model.name}'")
        )
        for model in client.search_registered_models()
    }


@pytest.fixture
def registered_versions() -> Callable[[str], dict[str, list[str]]]:
    """registered_versions(tracking_uri): model name -> its version numbers."""
    return _registered_versions


class ImageFiles:
    """Encoded image files for tests, good and bad, all made here (nothing downloaded)."""

    side = 8

    @staticmethod
    def encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
        """The bytes of `array` saved by Pillow in `fmt` (PNG, JPEG, ...)."""
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format=fmt)
        return buffer.getvalue()

    def noise(self, seed: int, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """Random uint8 pixels, distinct for every seed."""
        size = shape or (self.side, self.side)
        return np.random.default_rng(seed).integers(0, 256, size=size, dtype=np.uint8)

    def write_source(self, folder: Path, counts: dict[str, int]) -> Path:
        """A class-per-folder source of distinct random grayscale PNGs."""
        seed = 0
        for name, count in counts.items():
            (folder / name).mkdir(parents=True, exist_ok=True)
            for index in range(count):
                seed += 1
                (folder / name / f"{index:04d}.png").write_bytes(self.encode(self.noise(seed)))
        return folder

    @staticmethod
    def bomb_png(width: int = 40_000, height: int = 40_000) -> bytes:
        """A tiny PNG whose header declares width x height pixels (a decompression bomb)."""

        def chunk(kind: bytes, data: bytes) -> bytes:
            crc = zlib.crc32(kind + data) & 0xFFFFFFFF
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

        header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b"")
        )

    def truncated_jpeg(self) -> bytes:
        """The first half of a valid JPEG."""
        data = self.encode(self.noise(99, (64, 64)), "JPEG")
        return data[: len(data) // 2]


@pytest.fixture
def image_files() -> ImageFiles:
    """Factory of encoded test images: encode, noise, write_source, bomb_png, truncated_jpeg."""
    return ImageFiles()


@pytest.fixture
def webhook_listener() -> Iterator[tuple[str, list[dict]]]:
    """An HTTP endpoint on 127.0.0.1 recording every JSON document POSTed to it: (url, received)."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
