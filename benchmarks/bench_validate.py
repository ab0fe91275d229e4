"""Benchmark: profiling + validating a 70,000-image 28x28 dataset (target <= 15 s wall, 2 cores).

Builds the dataset once in a temporary repository: the MNIST-10k test images repeated 7 times,
every copy after the first with small pixel noise (so no two files are identical, as in a real
augmented set), ingested as one PNG per image. Then times the two DVC stage commands exactly
as `dvc repro` runs them, `python -m tasks.prepare` (decode once + per-image profile + splits)
and `python -m tasks.validate` (Great Expectations suites + Data Docs), and prints medians.

    .venv/bin/python benchmarks/bench_validate.py [--repeats 3] [--copies 7]

Each timed run is preceded by one untimed warm-up of both commands (bytecode and file cache).
The validation verdict is not the point here (the near-copies are near-duplicates across
splits, which the suite rightly reports); the exit status is 0 when both commands ran.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
MNIST_DIR = REPO_ROOT.parent / "shared" / "datasets" / "mnist-10k"
NOISE = 6  # max absolute pixel change of a perturbed copy
PYCACHE = Path(tempfile.gettempdir()) / "imgflow-bench-pycache"


def build_dataset(repo: Path, copies: int, seed: int = 0) -> int:
    """Write the perturbed MNIST copies as repo/data; returns the image count."""
    from tasks.ingest import SourceImages, load_idx_source, write_image_folder
    from tasks.paths import DATA_DIR, PARAMS_FILE

    base = load_idx_source(MNIST_DIR)
    rng = np.random.default_rng(seed)
    images = [base.images]
    for _ in range(copies - 1):
        noise = rng.integers(-NOISE, NOISE + 1, size=base.images.shape, dtype=np.int16)
        images.append(np.clip(base.images.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    loaded = SourceImages(
        np.concatenate(images), np.tile(base.labels, copies), base.class_names, base.origin
    )
    write_image_folder(loaded, repo / DATA_DIR, "mnist-bench", "idx")
    shutil.copy2(REPO_ROOT / PARAMS_FILE, repo / PARAMS_FILE)
    return len(loaded.labels)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], repo: Path) -> tuple[float, str]:
    # Bytecode is cached in a private folder (not .venv): with PYTHONDONTWRITEBYTECODE set,
    # every run would recompile Great Expectations' sources (~8 s of CPU measured here),
    # which a normal install pays once. The first, untimed warm-up run fills the cache.
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONPYCACHEPREFIX": str(PYCACHE)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode not in (0, 1) or "Traceback" in result.stderr:
        raise SystemExit(f"{' '.join(command)} crashed:\n{result.stdout}{result.stderr}")
    return seconds, (result.stdout + result.stderr).strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", type=int, default=7)
    args = parser.parse_args()
    if not MNIST_DIR.is_dir():
        print(f"{MNIST_DIR} not found: the benchmark needs the shared MNIST-10k files")
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        repo = Path(tmp)
        started = time.perf_counter()
        count = build_dataset(repo, args.copies)
        print(f"built {count} images in {time.perf_counter() - started:.1f} s (not timed below)")
        print(f"cpu count {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} at start")
        rows = []
        for command in ("prepare", "validate"):  # warm-up: bytecode cache, page cache
            timed([sys.executable, "-m", f"tasks.{command}"], repo)
        for run in range(args.repeats):
            cpu = children_cpu()
            prepare_s, _ = timed([sys.executable, "-m", "tasks.prepare"], repo)
            validate_s, output = timed([sys.executable, "-m", "tasks.validate"], repo)
            cpu = children_cpu() - cpu  # both commands and their decode workers
            total = prepare_s + validate_s
            rows.append((prepare_s, validate_s, total, cpu))
            print(
                f"run {run + 1}: prepare {prepare_s:5.2f} s  validate {validate_s:5.2f} s  "
                f"total {total:5.2f} s  {count / total:8.0f} images/s  "
                f"cpu {cpu:5.1f} s  load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
        from tasks.paths import VALIDATION_METRICS

        report = json.loads((repo / VALIDATION_METRICS).read_text())
        failed = report["failed_checks"]
        print(f"last validation: success={report['success']} failed={failed}")
        print(output.splitlines()[0] if output else "")
    medians = [statistics.median(column) for column in zip(*rows, strict=True)]
    print(
        f"median of {args.repeats}: prepare {medians[0]:.2f} s, validate {medians[1]:.2f} s, "
        f"total {medians[2]:.2f} s for {count} images = {count / medians[2]:.0f} images/s "
        f"(target <= 15 s); CPU {medians[3]:.1f} s, i.e. >= {medians[3] / 2:.1f} s wall "
        "on 2 otherwise idle cores"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
