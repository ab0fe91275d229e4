"""Quality run on a small colour dataset (issue 15): 800 MNIST-10k digits, each tinted a random
colour, 28x28 RGB, 80 per class, as a class-per-folder tree of PNGs.

The dataset is built in a temporary folder from ../shared/datasets/mnist-10k (never copied into
the repository), ingested through the `folder` source into a temporary repository copy, and the
pipeline's stages run there as their CLIs with the default params.yaml (stratified 80/10/10
split, seed 42), exactly as benchmarks/quality_mnist.py does for MNIST-10k:

    nice -n 10 .venv/bin/python benchmarks/quality_colour.py [--models cnn rnn gan] [--keep DIR]

Prints each stage's wall time and the headline metrics next to the issue's targets (CNN >= 90 %,
RNN >= 85 %, GAN >= 50 % recognisable with 10/10 classes).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO_ROOT.parent / "shared" / "datasets" / "mnist-10k"
PER_CLASS = 80
TARGETS = {"cnn": 0.90, "rnn": 0.85, "gan": 0.50}


def write_tinted_digits(folder: Path, per_class: int = PER_CLASS, seed: int = 0) -> Path:
    """The first `per_class` MNIST-10k test digits of each class, each multiplied by a random
    RGB colour (every channel 64..255), saved as 28x28 RGB PNGs in class folders."""
    raw = gzip.decompress((MNIST_DIR / "t10k-images-idx3-ubyte.gz").read_bytes())
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
    raw = gzip.decompress((MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())
    labels = np.frombuffer(raw, np.uint8, offset=8)
    rng = np.random.default_rng(seed)
    for label in range(10):
        (folder / str(label)).mkdir(parents=True)
        for index in np.flatnonzero(labels == label)[:per_class]:
            colour = rng.integers(64, 256, size=3).astype(np.float32) / 255.0
            tinted = np.rint(images[index][..., np.newaxis] * colour).astype(np.uint8)
            Image.fromarray(tinted, "RGB").save(folder / str(label) / f"{index:05d}.png")
    return folder


def copy_code(repo: Path, names: tuple[str, ...]) -> None:
    """Copy these files and folders of the repository into `repo`."""
    repo.mkdir(parents=True, exist_ok=True)
    for name in names:
        source = REPO_ROOT / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(source, repo / name, dirs_exist_ok=True, ignore=ignore)
        else:
            shutil.copy2(source, repo / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["cnn", "rnn", "gan"])
    parser.add_argument("--keep", type=Path, help="repo copy to create or reuse (kept afterwards)")
    args = parser.parse_args(argv)
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        print(f"skipped: {MNIST_DIR} not found", file=sys.stderr)
        return 0
    sys.path.insert(0, str(REPO_ROOT))
    from benchmarks.quality_mnist import COPIED, run
    from tasks.ingest import ingest

    work = Path(tempfile.mkdtemp(prefix="imgflow-colour-"))
    repo = args.keep or work / "repo"
    if not (repo / "artifacts/prepared/splits.npz").is_file():
        copy_code(repo, COPIED)
        ingest("folder", write_tinted_digits(work / "tinted-mnist-800"), repo / "data")
        for stage in ("prepare", "validate"):
            run([sys.executable, "-m", f"tasks.{stage}"], repo)
    else:  # reuse the data and splits, but train the current code and params
        copy_code(repo, ("tasks", "models", "params.yaml"))
    print(f"repo copy: {repo}")

    wall, rss = {}, {}
    for model in args.models:
        wall[model], rss[model] = run([sys.executable, "-m", "tasks.train", model], repo)
    for model in args.models:
        if model == "gan" and not (repo / "artifacts/models/cnn/model.keras").is_file():
            continue
        run([sys.executable, "-m", "tasks.evaluate", model], repo)

    print("\nquality on tinted-colour MNIST, 800 images (test split), targets from issue 15:")
    for model in args.models:
        metrics = json.loads((repo / "metrics" / f"{model}.json").read_text())
        trained = json.loads((repo / "artifacts/models" / model / "train.json").read_text())
        target = TARGETS[model]
        if model == "gan":
            value = metrics["recognisable_share"]
            covered = f"{metrics['classes_covered']}/{metrics['classes_total']}"
            figure = f"recognisable {value:.3f} (target >= {target}, 10/10), classes {covered}"
            met = value >= target and metrics["classes_covered"] == metrics["classes_total"]
        else:
            value = metrics["test_accuracy"]
            figure = f"test accuracy {value:.4f} (target >= {target})"
            met = value >= target
        print(
            f"  {model}: {figure} {'met' if met else 'NOT met'}; {trained['epochs_run']} epochs "
            f"(best {trained['best_epoch']}), train wall {wall[model]:.0f} s, "
            f"peak RSS {rss[model]:.0f} MiB"
        )
    print(f"  all trainings: {sum(wall.values()):.0f} s wall on {os.cpu_count()} cores")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
