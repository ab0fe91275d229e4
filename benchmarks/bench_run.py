"""Benchmark `imgflow run` on the bundled digits: one full run and repeated no-op re-runs.

Runs in a temporary copy of the repository (fresh DVC cache and MLflow store, so nothing is
restored from earlier runs) with the environment already built, as `make bench` does:

    uv run python benchmarks/bench_run.py [--noop-runs 3]

Targets (issue 2): full run <= 180 s, no-op re-run <= 30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
COPIED = (
    "flows",
    "tasks",
    "models",
    ".dvc",
    "dvc.yaml",
    "params.yaml",
    "data.dvc",
    ".dvcignore",
    ".gitignore",
    "pyproject.toml",
)


def copy_repo(target: Path) -> None:
    for name in COPIED:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(
                source, target / name, ignore=shutil.ignore_patterns("__pycache__", "cache", "tmp")
            )
        else:
            shutil.copy2(source, target / name)
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(
            ["git", "-c", "user.email=b@b", "-c", "user.name=b", *command], cwd=target, check=True
        )


def timed_run(repo: Path, log: Path) -> float:
    imgflow = Path(sys.executable).parent / "imgflow"
    started = time.perf_counter()
    with log.open("a") as handle:
        subprocess.run(
            [str(imgflow), "run"], cwd=repo, check=True, stdout=handle, stderr=subprocess.STDOUT
        )
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noop-runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imgflow-bench-") as temporary:
        repo = Path(temporary) / "repo"
        repo.mkdir()
        copy_repo(repo)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{repo / 'mlflow.db'}"
        log = Path(temporary) / "run.log"
        full = timed_run(repo, log)
        print(f"full run (ingest + every dvc.yaml stage): {full:.1f} s  (target <= 180 s)")
        noop = [timed_run(repo, log) for _ in range(args.noop_runs)]
        print(
            f"no-op re-run: median {statistics.median(noop):.1f} s over {len(noop)} "
            f"(runs {', '.join(f'{s:.1f}' for s in noop)})  (target <= 30 s)"
        )
        print(f"cores: {os.cpu_count()}; log: last lines below")
        print("\n".join(log.read_text().splitlines()[-6:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
