"""Benchmark training throughput: the pipeline's training vs ../shared/bench/bare_keras.py.

Both sides train the same architectures (the reference CNN and 3 x LSTM(64)) on the same 8,000
MNIST-10k training images with batch 64:

- bare: the models and input exactly as bare_keras.py builds them (float32 arrays in /255,
  `model.fit(x, y, batch_size=64)`);
- pipeline: tasks.train's input and fit path (uint8 images through `make_dataset`: tf.data with
  cache, shuffle, prefetch; `compile_model`; the per-epoch record, atomic backup and progress
  callbacks) with `models.build_reference_cnn` / `build_reference_rnn`, which rescale inside.

Each (side, model) runs in its own process, so graphs and memory do not mix; the per-epoch times
give a median over the epochs after the first (warm-up: tracing). Peak RSS is that process's
maximum resident set size. Validation is left out on both sides (bare_keras.py has none).

    .venv/bin/python benchmarks/bench_train.py [--epochs 5] [--jit]

Targets (issue 4): pipeline / bare >= 1.0x (aim 1.3x); peak RSS of a training process < 3 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BARE_SCRIPT = REPO_ROOT.parent / "shared" / "bench" / "bare_keras.py"
MNIST_DIR = REPO_ROOT.parent / "shared" / "datasets" / "mnist-10k"
BATCH_SIZE = 64


def load_bare(mnist_dir: Path) -> dict:
    """Execute bare_keras.py up to its timing loop: its data arrays and model builders."""
    source = BARE_SCRIPT.read_text()
    head = source[: source.index("for name, build, xin")]
    namespace: dict = {}
    saved_argv = sys.argv
    sys.argv = [str(BARE_SCRIPT), str(mnist_dir)]
    try:
        exec(compile(head, str(BARE_SCRIPT), "exec"), namespace)
    finally:
        sys.argv = saved_argv
    return namespace


def epoch_timer():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None) -> None:
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


def worker(side: str, model: str, epochs: int, jit: bool) -> dict:
    """Train one (side, model) for `epochs` epochs; return its per-epoch seconds."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(42)
    bare = load_bare(MNIST_DIR)
    timer = epoch_timer()
    if side == "bare":
        x = bare["xtr"][..., None] if model == "cnn" else bare["xtr"]
        network = bare[model]()
        network.fit(
            x, bare["ytr"], epochs=epochs, batch_size=BATCH_SIZE, callbacks=[timer], verbose=0
        )
        return {"seconds": timer.seconds, "images": len(x)}

    from models import build_reference_cnn, build_reference_rnn
    from tasks.train import (
        _backup_callback,
        _progress_callback,
        _training_record_callback,
        compile_model,
        make_dataset,
    )

    # The same images as bare_keras.py, back in raw 0..255 uint8 as the pipeline stores them.
    images = np.rint(bare["xtr"] * 255).astype(np.uint8)[..., None]
    labels = bare["ytr"]
    build = build_reference_cnn if model == "cnn" else build_reference_rnn
    network = build((28, 28, 1), 10)
    params = {
        "epochs": epochs,
        "batch_size": BATCH_SIZE,
        "optimizer": "adam",
        "learning_rate": 0.001,
        "jit_compile": jit,
    }
    steps = -(-len(images) // BATCH_SIZE)
    compile_model(model, network, params, steps)
    data = make_dataset(images, labels, BATCH_SIZE, shuffle_seed=42)
    with tempfile.TemporaryDirectory() as checkpoints:
        callbacks = [
            _training_record_callback(Path(checkpoints), None),
            _backup_callback(Path(checkpoints) / "backup"),
            _progress_callback(model, epochs, len(images)),
            timer,
        ]
        network.fit(data, epochs=epochs, callbacks=callbacks, shuffle=False, verbose=0)
    return {"seconds": timer.seconds, "images": len(images)}


def run_worker(side: str, model: str, epochs: int, jit: bool) -> dict:
    """Run `worker` in a fresh process; add that process's peak RSS (from wait4)."""
    command = [sys.executable, __file__, "--worker", side, model, "--epochs", str(epochs)]
    if jit:
        command.append("--jit")
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        raise SystemExit(f"{' '.join(command)} failed:\n{output}")
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024  # Linux reports KiB
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--jit", action="store_true", help="XLA-compile the pipeline's step")
    parser.add_argument("--models", nargs="+", default=["cnn", "rnn"])
    parser.add_argument("--worker", nargs=2, metavar=("SIDE", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.epochs, args.jit)))
        return 0
    if not MNIST_DIR.is_dir() or not BARE_SCRIPT.is_file():
        print(f"skipped: {MNIST_DIR} or {BARE_SCRIPT} not found", file=sys.stderr)
        return 0

    print(f"{args.epochs} epochs each, batch {BATCH_SIZE}, median over epochs 2..{args.epochs}")
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for model in args.models:
        rates = {}
        for side in ("bare", "pipeline"):
            result = run_worker(side, model, args.epochs, args.jit)
            after_warmup = result["seconds"][1:] or result["seconds"]
            rates[side] = result["images"] / statistics.median(after_warmup)
            per_epoch = " ".join(f"{result['images'] / s:.0f}" for s in result["seconds"])
            print(
                f"  {model} {side:<8} median {rates[side]:6.0f} img/s  (per epoch: {per_epoch})  "
                f"peak RSS {result['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
        print(f"  {model} ratio pipeline/bare: {rates['pipeline'] / rates['bare']:.2f}x")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
