"""Orchestration overhead against a running Prefect server (issue 6).

Starts a real Prefect server and process workers on 127.0.0.1, applies the deployments and, on
two fresh copies of the repository with the tests' tiny params, times the `retrain` deployment
(a) with trainings in-process, (b) in worker mode (three `train-model` runs on the gpu pool),
then (c) a `retrain` run with nothing to do, three times.

    uv run python benchmarks/bench_orchestration.py

Targets: (c) median <= 15 s; (b) / (a) <= 1.5.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.bench_run import copy_repo  # noqa: E402
from tests.conftest import tiny_params  # noqa: E402


def fresh_copy(target: Path) -> Path:
    target.mkdir(parents=True)
    copy_repo(target)
    params = tiny_params(yaml.safe_load((target / "params.yaml").read_text()))
    (target / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return target


def timed_deployment_run(parameters: dict) -> float:
    from prefect.deployments import run_deployment

    from flows.deploy import RETRAIN_DEPLOYMENT

    started = time.perf_counter()
    flow_run = run_deployment(
        RETRAIN_DEPLOYMENT, parameters=parameters, timeout=1800, poll_interval=1
    )
    seconds = time.perf_counter() - started
    if not flow_run.state.is_completed():
        raise RuntimeError(f"retrain ended {flow_run.state.name}: {flow_run.state.message}")
    return seconds


def main() -> int:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deploy import apply_deployments
    from flows.serve import local_stack
    from tasks.settings import Settings

    with tempfile.TemporaryDirectory(prefix="imgflow-orch-") as temporary:
        root = Path(temporary)
        in_process, worker = fresh_copy(root / "a"), fresh_copy(root / "b")
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        with (
            local_stack(root / "prefect-home", log_dir=root / "logs") as stack,
            temporary_settings({PREFECT_API_URL: stack.api_url}),
        ):
            settings = Settings.from_environment(
                in_process, environment={"IMGFLOW_TRAINING_TIMEOUT": "1800"}
            )
            apply_deployments(settings)
            stack.start_worker("cpu", 1, root / "logs" / "worker-cpu.log")
            stack.start_worker("gpu", 3, root / "logs" / "worker-gpu.log")
            a = timed_deployment_run({"repo": str(in_process), "training_mode": "in-process"})
            b = timed_deployment_run({"repo": str(worker), "training_mode": "worker"})
            idle = [
                timed_deployment_run({"repo": str(worker), "training_mode": "worker"})
                for _ in range(3)
            ]
    print(f"retrain, tiny config, trainings in-process: {a:.1f} s")
    print(
        f"retrain, tiny config, worker mode (3 train-model runs on pool gpu): {b:.1f} s "
        f"-> ratio {b / a:.2f} (target <= 1.5)"
    )
    print(
        f"retrain with nothing to do: median {statistics.median(idle):.1f} s "
        f"(runs {', '.join(f'{s:.1f}' for s in idle)}; target <= 15 s)"
    )
    print(f"cores: {os.cpu_count()}; times include the process worker's flow-run start-up")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
