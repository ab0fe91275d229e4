"""Worker hand-off across hosts (issue 11): worker mode vs in-process, hand-off per training,
and `dvc pull` of a 70,000-image dataset from the S3 store.

Starts the team servers (`flows.team.team_stack`: weed mini S3, MLflow and Prefect on
PostgreSQL) on 127.0.0.1 with their own databases, an origin repository cloned from this
checkout's HEAD, two scheduling clones (one in worker mode, one in-process, both with the DVC
remote on the store) and one worker host (its own clone, HOME, PREFECT_HOME and DVC cache,
started with `imgflow worker --pool gpu` from environment variables only). Each round changes
`seed` (committed and pushed, so every stage is stale on both sides) and runs `imgflow run` on
both sides, alternating which goes first; the digits dataset and default params.

    .venv/bin/python benchmarks/bench_handoff.py [--rounds 3] [--skip-pull] [--pull-only]

Targets: worker-mode wall time <= 1.3x in-process (median of the per-round ratios); hand-off
per training <= 10 s (dispatch wall time minus the worker's training stage: queueing, code
clone, data pull, output and run-cache push, the scheduler's restore); `dvc pull` of the
70,000-image MNIST-derived dataset <= 20 s. Needs PostgreSQL on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from flows.serve import stop_processes  # noqa: E402
from flows.team import configure_dvc_remote, team_stack  # noqa: E402
from flows.team_config import private_team_environment, worker_environment  # noqa: E402
from tasks.settings import Settings  # noqa: E402

MNIST = REPO_ROOT.parent / "shared" / "datasets" / "mnist-10k"
SECRETS = {
    "AWS_ACCESS_KEY_ID": "bench-key",
    "AWS_SECRET_ACCESS_KEY": "bench-secret-value",
    "IMGFLOW_MLFLOW_ADMIN_PASSWORD": "bench-admin-password",
    "IMGFLOW_PREFECT_AUTH_STRING": "prefect:bench-token",
}
HANDOFF = re.compile(r"train@(\w+) on worker: ([\d.]+) s, .* stage ([\d.]+) s and the hand-off")


def git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.email=b@example.com", "-c", "user.name=bench", *args]
    return subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True).stdout


def dvc(repo: Path, environment: dict[str, str], *args: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, env=environment, check=True,
        capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - started


def drop_databases(names: list[str]) -> None:
    import psycopg2

    connection = psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    connection.close()


@contextmanager
def servers(root: Path) -> Iterator[Settings]:
    prefix = f"imgflow_b{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}_mlflow", f"{prefix}_auth", f"{prefix}_prefect"]
    environment = {**SECRETS, **private_team_environment(root / "state", "imgflow-bench", names)}
    settings = Settings.from_environment(REPO_ROOT, environment=environment)
    started = time.perf_counter()
    try:
        with team_stack(settings, root / "logs", mlflow_workers=1):
            print(f"team servers up in {time.perf_counter() - started:.0f} s", flush=True)
            yield settings
    finally:
        drop_databases(names)


def host_environment(settings: Settings, home: Path, origin: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    environment = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG")}
    environment.update(worker_environment(settings))
    environment.update(
        HOME=str(home),
        PREFECT_HOME=str(home / ".prefect"),
        IMGFLOW_DVC_CACHE_DIR=str(home / "dvc-cache"),
        IMGFLOW_GIT_URL=str(origin),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
    )
    return environment


def clone(origin: Path, target: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(origin), str(target)], check=True)
    return target


def set_seed(scheduler: Path, seed: int) -> None:
    """A new seed makes every stage stale; committed and pushed, as worker mode requires."""
    params = yaml.safe_load((scheduler / "params.yaml").read_text())
    params["seed"] = seed
    (scheduler / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(scheduler, "commit", "-q", "-m", f"seed {seed}", "params.yaml")  # not the run's outputs
    git(scheduler, "push", "-q", "origin", "HEAD:main")


def run_side(checkout: Path, environment: dict[str, str], log: Path) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run"], cwd=checkout, env=environment,
        capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise RuntimeError(f"imgflow run failed in {checkout}:\n{tail}")
    return seconds, done.stdout + done.stderr


def compare(settings: Settings, root: Path, rounds: int) -> None:
    origin = root / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(REPO_ROOT), str(origin)], check=True)
    setup = clone(origin, root / "setup")
    configure_dvc_remote(setup, settings)
    git(setup, "commit", "-q", "-am", "DVC remote on the team's store")
    git(setup, "push", "-q", "origin", "HEAD:main")
    sides = {}
    for mode in ("worker", "in-process"):
        checkout = clone(origin, root / mode / "checkout")
        environment = host_environment(settings, root / mode / "home", origin)
        environment["IMGFLOW_TRAINING_MODE"] = mode
        sides[mode] = (checkout, environment)
    worker_checkout = clone(origin, root / "gpu-host" / "checkout")
    worker_env = host_environment(settings, root / "gpu-host" / "home", origin)
    worker = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "worker", "--pool", "gpu", "--limit", "3"],
        cwd=worker_checkout,
        env={**worker_env, "PYTHONUNBUFFERED": "1"},
        stdout=(root / "logs" / "gpu-worker.log").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        ratios, walls, handoffs = [], {"worker": [], "in-process": []}, []
        for index in range(rounds):
            order = ("worker", "in-process") if index % 2 == 0 else ("in-process", "worker")
            seconds = {}
            set_seed(sides["worker"][0], 1000 + index)
            git(sides["in-process"][0], "pull", "-q", "--ff-only", "origin", "main")
            for mode in order:
                checkout, environment = sides[mode]
                log = root / "logs" / f"run-{mode}-{index}.log"
                seconds[mode], output = run_side(checkout, environment, log)
                if mode == "worker":
                    for model, wall, stage in HANDOFF.findall(output):
                        handoffs.append(float(wall) - float(stage))
                        print(f"  round {index} train@{model}: dispatch {wall} s, "
                              f"stage on worker {stage} s, hand-off "
                              f"{float(wall) - float(stage):.1f} s", flush=True)  # fmt: skip
            ratio = seconds["worker"] / seconds["in-process"]
            ratios.append(ratio)
            for mode in seconds:
                walls[mode].append(seconds[mode])
            print(
                f"round {index} ({order[0]} first): worker {seconds['worker']:.1f} s, "
                f"in-process {seconds['in-process']:.1f} s, ratio {ratio:.2f}",
                flush=True,
            )
    finally:
        stop_processes([worker])
    print(f"worker mode / in-process, median of {rounds} rounds: {statistics.median(ratios):.2f}x"
          f" (target <= 1.3x); medians {statistics.median(walls['worker']):.1f} s vs "
          f"{statistics.median(walls['in-process']):.1f} s")  # fmt: skip
    if handoffs:
        print(f"hand-off per training: median {statistics.median(handoffs):.1f} s, max "
              f"{max(handoffs):.1f} s over {len(handoffs)} (target <= 10 s)")  # fmt: skip


def write_70k(folder: Path) -> int:
    """70,000 PNGs: the 10,000 MNIST-10k test images, each also shifted by one pixel in six
    directions, one folder per class."""
    from PIL import Image

    with gzip.open(MNIST / "t10k-images-idx3-ubyte.gz") as handle:
        images = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(MNIST / "t10k-labels-idx1-ubyte.gz") as handle:
        labels = np.frombuffer(handle.read(), np.uint8, offset=8)
    shifts = [(0, 0), (0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, -1)]
    for label in range(10):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
    count = 0
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        for shift_index, shift in enumerate(shifts):
            shifted = np.roll(image, shift, axis=(0, 1))
            Image.fromarray(shifted).save(folder / str(label) / f"{index:05d}-{shift_index}.png")
            count += 1
    return count


def pull_70k(settings: Settings, root: Path) -> None:
    source = root / "data70k-source"
    source.mkdir(parents=True)
    git(source, "init", "-q")
    environment = host_environment(settings, root / "pull-home-a", source)
    dvc(source, environment, "init", "-q")
    configure_dvc_remote(source, settings)
    started = time.perf_counter()
    count = write_70k(source / "data")
    print(f"wrote {count} PNGs in {time.perf_counter() - started:.0f} s", flush=True)
    print(f"dvc add: {dvc(source, environment, 'add', 'data'):.1f} s", flush=True)
    print(f"dvc push: {dvc(source, environment, 'push'):.1f} s", flush=True)
    git(source, "add", "-A")
    git(source, "commit", "-q", "-m", "70k")
    for jobs in (None, 64):
        target = clone(source, root / f"data70k-clone-{jobs}")
        environment = host_environment(settings, root / f"pull-home-{jobs}", source)
        flag = ["--jobs", str(jobs)] if jobs else []
        fetch = dvc(target, environment, "fetch", *flag)
        checkout = dvc(target, environment, "checkout")
        pulled = sum(1 for _ in (target / "data").rglob("*.png"))
        print(
            f"dvc pull ({'--jobs ' + str(jobs) if jobs else 'default jobs'}) of {pulled} images "
            f"into an empty cache: {fetch + checkout:.1f} s = fetch {fetch:.1f} s + checkout "
            f"{checkout:.1f} s (target <= 20 s)",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-pull", action="store_true", help="no 70,000-image pull")
    parser.add_argument("--pull-only", action="store_true", help="only the 70,000-image pull")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-handoff-"))
    try:
        with servers(root) as settings:
            if not args.pull_only:
                compare(settings, root, args.rounds)
            if not args.skip_pull:
                pull_70k(settings, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
