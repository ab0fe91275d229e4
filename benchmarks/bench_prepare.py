"""Prepare speed with the image policy (issue 15): resizing mixed-size images vs uniform ones.

Builds two class-per-folder datasets of the same count (default 70,000, MNIST-10k digits
repeated) in a temporary folder, never in the repository: `uniform`, every image a 28x28
grayscale PNG as today, prepared with no policy; `mixed`, each image resized beforehand to a
random height and width in [20, 56] and prepared with `image_size: [28, 28]`. Both go through
`tasks.ingest.ingest` (folder source) and then `tasks.prepare.prepare` in this process; the
prepare wall times and their ratio are printed (target: mixed <= 2x uniform).

    nice -n 10 .venv/bin/python benchmarks/bench_prepare.py [--count 70000]
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
MNIST_IMAGES = REPO_ROOT.parent / "shared" / "datasets" / "mnist-10k" / "t10k-images-idx3-ubyte.gz"
MNIST_LABELS = REPO_ROOT.parent / "shared" / "datasets" / "mnist-10k" / "t10k-labels-idx1-ubyte.gz"
SIZES = (20, 56)  # random source height and width, inclusive


def read_mnist() -> tuple[np.ndarray, np.ndarray]:
    images = np.frombuffer(gzip.decompress(MNIST_IMAGES.read_bytes()), np.uint8, offset=16)
    labels = np.frombuffer(gzip.decompress(MNIST_LABELS.read_bytes()), np.uint8, offset=8)
    return images.reshape(-1, 28, 28), labels


def write_source(folder: Path, count: int, mixed: bool, seed: int = 0) -> Path:
    """`count` PNGs in class folders: MNIST digits, 28x28 or resized to a random size."""
    images, labels = read_mnist()
    rng = np.random.default_rng(seed)
    for label in range(10):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        picture = Image.fromarray(images[index % len(images)])
        if mixed:
            height, width = (int(v) for v in rng.integers(SIZES[0], SIZES[1] + 1, size=2))
            picture = picture.resize((width, height), Image.Resampling.BILINEAR)
        picture.save(folder / str(labels[index % len(labels)]) / f"{index:06d}.png")
    return folder


def timed_prepare(work: Path, name: str, count: int, image_size: list[int] | None) -> float:
    """Ingest a fresh source and time `prepare` on it; returns the prepare seconds."""
    from tasks.ingest import ingest
    from tasks.params import PrepareParams
    from tasks.prepare import prepare

    source = write_source(work / f"{name}-src", count, mixed=image_size is not None)
    data = work / f"{name}-data"
    ingest("folder", source, data)
    shutil.rmtree(source)
    params = PrepareParams(val_fraction=0.1, test_fraction=0.1, image_size=image_size)
    started = time.perf_counter()
    meta = prepare(data, work / name / "splits.npz", work / name / "meta.json", params, 42)
    seconds = time.perf_counter() - started
    print(
        f"  {name:<8} {count} images -> {meta['image_shape']}: prepare {seconds:6.1f} s "
        f"({count / seconds:,.0f} images/s), {meta['excluded']} excluded",
        flush=True,
    )
    shutil.rmtree(data)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=70_000)
    args = parser.parse_args(argv)
    if not MNIST_IMAGES.is_file():
        print(f"skipped: {MNIST_IMAGES} not found", file=sys.stderr)
        return 0
    sys.path.insert(0, str(REPO_ROOT))
    with tempfile.TemporaryDirectory(prefix="imgflow-bench-prepare-") as temporary:
        work = Path(temporary)
        timed_prepare(work, "warm-up", 500, None)  # imports (pandas, pyarrow) out of the timing
        uniform = timed_prepare(work, "uniform", args.count, None)
        mixed = timed_prepare(work, "mixed", args.count, [28, 28])
    print(f"mixed-size with resizing / uniform: {mixed / uniform:.2f}x (target <= 2x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
