"""Benchmark training throughput: the pipeline's training vs ../shared/bench/bare_keras.py.

Both sides train the same architectures (the reference CNN and 3 x LSTM(64)) on the same 8,000
MNIST-10k training images with batch 64:

- bare: the models and input exactly as bare_keras.py builds them (float32 arrays in /255,
  `model.fit(x, y, batch_size=64)`);
- pipeline: tasks.train's input and fit path (uint8 images through `make_dataset`: tf.data with
  cache, shuffle, prefetch; `compile_model` with params.yaml's `jit_compile` and
  `steps_per_execution` for that model; the per-epoch record, atomic backup and progress
  callbacks) with `models.build_reference_cnn` / `build_reference_rnn`, which rescale inside.

Each side runs in its own process (graphs, thread pools and memory do not mix), and the two
processes take turns epoch by epoch (the one that goes first alternates), so the drift in speed
of a shared 2-core VM, which is large over minutes, hits both sides alike. The ratio is the
median of the per-epoch-pair ratios after the first epoch (warm-up: tracing, XLA compilation,
filling the cache); the medians of each side's rates are printed too. Peak RSS is each process's
maximum resident set size. Validation is left out on both sides (bare_keras.py has none).

    .venv/bin/python benchmarks/bench_train.py [--epochs 9] [--jit | --no-jit]

Targets (issue 4): pipeline / bare >= 1.0x (aim 1.3x); peak RSS of a training process < 3 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parents[1]
BARE_SCRIPT = REPO_ROOT.parent / "shared" / "bench" / "bare_keras.py"
MNIST_DIR = REPO_ROOT.parent / "shared" / "datasets" / "mnist-10k"
BATCH_SIZE = 64
REPLY = "bench-train-reply"  # marks the worker's protocol lines on its stdout


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


def epoch_timer() -> Any:
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


def model_section(model: str) -> Any:
    """The model's typed section of params.yaml (its XLA, steps-per-call and unroll settings)."""
    from tasks.params import TrainParams, load_section

    return load_section(TrainParams, "train", REPO_ROOT / "params.yaml").model(model)


def speed_settings(model: str) -> dict:
    """The compile settings params.yaml gives this model's training (XLA, steps per call)."""
    section = model_section(model).model_dump()
    keys = ("jit_compile", "steps_per_execution", "unroll")
    return {key: section[key] for key in keys if key in section}


class TurnTaker:
    """A training that runs one epoch each time the benchmark says "go" on stdin."""

    def __init__(self, side: str, model: str, epochs: int, jit: bool | None) -> None:
        import keras
        import numpy as np

        keras.utils.set_random_seed(42)
        bare = load_bare(MNIST_DIR)
        self.timer = epoch_timer()
        self.epoch = 0
        self.scratch: Path | None = None  # the pipeline's checkpoint folder, removed at the end
        if side == "bare":
            self.network = bare[model]()
            x = bare["xtr"][..., None] if model == "cnn" else bare["xtr"]
            self.fit_kwargs = {"x": x, "y": bare["ytr"], "batch_size": BATCH_SIZE}
            self.callbacks = [self.timer]
            self.images = len(x)
            return

        from models import build_reference_cnn, build_reference_rnn
        from tasks.callbacks import AtomicBackupAndRestore, EpochProgress, TrainingRecord
        from tasks.train import compile_model, make_dataset

        # The same images as bare_keras.py, back in raw 0..255 uint8 as the pipeline stores them.
        images = np.rint(bare["xtr"] * 255).astype(np.uint8)[..., None]
        section = model_section(model)
        if model == "cnn":
            self.network = build_reference_cnn((28, 28, 1), 10)
        else:
            self.network = build_reference_rnn((28, 28, 1), 10, unroll=section.unroll)
        update = {"epochs": epochs, "batch_size": BATCH_SIZE, "optimizer": "adam"}
        update["learning_rate"] = 0.001
        if jit is not None:
            update["jit_compile"] = jit
        params = section.model_copy(update=update)
        compile_model(self.network, params, -(-len(images) // BATCH_SIZE))
        data = make_dataset(images, bare["ytr"], BATCH_SIZE, shuffle_seed=42)
        self.fit_kwargs = {"x": data, "shuffle": False}
        checkpoints = self.scratch = Path(tempfile.mkdtemp(prefix="bench-train-"))
        self.callbacks = [
            TrainingRecord(checkpoints, None),
            AtomicBackupAndRestore(checkpoints / "backup"),
            EpochProgress(model, epochs, len(images)),
            self.timer,
        ]
        self.images = len(images)

    def run_epoch(self) -> float:
        """Train the next epoch; its seconds from on_epoch_begin to on_epoch_end."""
        self.network.fit(
            **self.fit_kwargs,
            initial_epoch=self.epoch,
            epochs=self.epoch + 1,
            callbacks=self.callbacks,
            verbose=0,
        )
        self.epoch += 1
        return self.timer.seconds[-1]


def worker(side: str, model: str, epochs: int, jit: bool | None) -> None:
    """Serve the turn-taking protocol: "ready", then one epoch per "go" line."""
    trainer = TurnTaker(side, model, epochs, jit)
    print(REPLY, json.dumps({"ready": True, "images": trainer.images}), flush=True)
    try:
        for _ in sys.stdin:
            print(REPLY, json.dumps({"seconds": trainer.run_epoch()}), flush=True)
    finally:
        if trainer.scratch is not None:
            shutil.rmtree(trainer.scratch, ignore_errors=True)


def start_worker(side: str, model: str, epochs: int, jit: bool | None) -> subprocess.Popen[str]:
    command = [sys.executable, __file__, "--worker", side, model, "--epochs", str(epochs)]
    if jit is not None:
        command.append("--jit" if jit else "--no-jit")
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def _pipes(process: subprocess.Popen[str]) -> tuple[IO[str], IO[str]]:
    """The worker's stdin and stdout (both are pipes: start_worker opens them)."""
    if process.stdin is None or process.stdout is None:
        raise RuntimeError("the worker was started without pipes")
    return process.stdin, process.stdout


def read_reply(process: subprocess.Popen[str]) -> dict:
    """The worker's next reply; other output (the pipeline's progress lines) is skipped."""
    for line in _pipes(process)[1]:
        if line.startswith(REPLY):
            return json.loads(line[len(REPLY) :])
    raise SystemExit(f"{process.args!r} stopped early (exit {process.wait()})")


def race(model: str, epochs: int, jit: bool | None) -> dict:
    """Both sides of one model, taking turns epoch by epoch; rates and peak RSS per side."""
    sides = ("bare", "pipeline")
    processes = {side: start_worker(side, model, epochs, jit) for side in sides}
    images = {side: read_reply(processes[side])["images"] for side in sides}  # both built
    rates: dict[str, list[float]] = {side: [] for side in sides}
    for epoch in range(epochs):
        for side in sides if epoch % 2 == 0 else sides[::-1]:
            stdin = _pipes(processes[side])[0]
            stdin.write("go\n")
            stdin.flush()
            rates[side].append(images[side] / read_reply(processes[side])["seconds"])
    peak = {}
    for side, process in processes.items():
        _pipes(process)[0].close()
        _, status, usage = os.wait4(process.pid, 0)
        if status:
            raise SystemExit(f"{process.args!r} failed (status {status})")
        peak[side] = usage.ru_maxrss / 1024  # Linux reports KiB
    return {"rates": rates, "peak_rss_mib": peak}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument(
        "--jit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="override params.yaml's jit_compile for the pipeline side",
    )
    parser.add_argument("--models", nargs="+", default=["cnn", "rnn"])
    parser.add_argument("--worker", nargs=2, metavar=("SIDE", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        side, model = args.worker
        worker(side, model, args.epochs, args.jit)
        return 0
    if not MNIST_DIR.is_dir() or not BARE_SCRIPT.is_file():
        print(f"skipped: {MNIST_DIR} or {BARE_SCRIPT} not found", file=sys.stderr)
        return 0
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first epoch is warm-up)")

    print(
        f"{args.epochs} epochs per side, batch {BATCH_SIZE}, sides take turns epoch by epoch; "
        f"medians over epochs 2..{args.epochs}"
    )
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for model in args.models:
        settings = speed_settings(model)
        if args.jit is not None:
            settings["jit_compile"] = args.jit
        result = race(model, args.epochs, args.jit)
        rates, peak = result["rates"], result["peak_rss_mib"]
        for side in ("bare", "pipeline"):
            print(
                f"  {model} {side:<8} median {statistics.median(rates[side][1:]):6.0f} img/s  "
                f"(per epoch: {' '.join(f'{rate:.0f}' for rate in rates[side])})  "
                f"peak RSS {peak[side]:.0f} MiB",
                flush=True,
            )
        ratios = [p / b for p, b in zip(rates["pipeline"][1:], rates["bare"][1:], strict=True)]
        print(
            f"  {model} ratio pipeline/bare: median {statistics.median(ratios):.2f}x "
            f"(per epoch pair: {' '.join(f'{r:.2f}' for r in ratios)}); "
            f"pipeline settings {settings or 'defaults'}",
            flush=True,
        )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
