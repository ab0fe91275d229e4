"""Scheduled retraining against a real Prefect server and real process workers (no mocks):
deployments applied, cron schedule served by the API, `retrain` triggered in worker mode with
three `train-model` runs on the gpu pool, a webhook notification received, and a second trigger
with no new data training nothing."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.registry.lineage import data_version

pytestmark = [pytest.mark.slow, pytest.mark.pipeline]


def flow_runs_of(client, flow_name: str) -> list:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))


def test_retrain_deployment_dispatches_trainings_to_gpu_workers(
    repo_copy: Path,
    tmp_path: Path,
    webhook_listener: tuple[str, list[dict]],
    registered_versions: Callable[[str], dict[str, list[str]]],
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deploy import RETRAIN_DEPLOYMENT, apply_deployments
    from flows.serve import local_stack
    from tasks.settings import Settings

    logs = tmp_path / "logs"
    webhook_url, received = webhook_listener
    with (
        local_stack(tmp_path / "prefect-home", log_dir=logs) as stack,
        temporary_settings({PREFECT_API_URL: stack.api_url}),
    ):
        settings = Settings.from_environment(
            repo_copy,
            environment={
                "IMGFLOW_WEBHOOK_URL": webhook_url,
                "IMGFLOW_TRAINING_MODE": "worker",
                "IMGFLOW_TRAINING_TIMEOUT": "900",
            },
        )
        apply_deployments(settings)
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(RETRAIN_DEPLOYMENT)
            assert [s.schedule.cron for s in deployment.schedules] == ["0 2 * * *"]
            assert deployment.work_pool_name == "cpu"
        stack.start_worker("cpu", 1, logs / "worker-cpu.log")
        stack.start_worker("gpu", 3, logs / "worker-gpu.log")

        first = run_deployment(RETRAIN_DEPLOYMENT, timeout=1200, poll_interval=2)
        assert first.state.is_completed(), (logs / "worker-cpu.log").read_text()[-3000:]
        with get_client(sync_client=True) as client:
            trainings = flow_runs_of(client, "train-model")
        assert len(trainings) == 3
        assert all(run.state.is_completed() and run.work_pool_name == "gpu" for run in trainings)
        assert sorted(run.parameters["model"] for run in trainings) == ["cnn", "gan", "rnn"]
        assert registered_versions(os.environ["MLFLOW_TRACKING_URI"]) == {
            "digits-cnn": ["1"],
            "digits-rnn": ["1"],
            "digits-gan": ["1"],
        }
        assert any(doc["state"] == "Completed" and doc["flow"] == "retrain" for doc in received)

        second = run_deployment(RETRAIN_DEPLOYMENT, timeout=600, poll_interval=2)
        assert second.state.is_completed()
        with get_client(sync_client=True) as client:
            assert len(flow_runs_of(client, "train-model")) == 3  # nothing new to train

        # New labelled images land: a new data version, and every model retrains on it.
        landing = tmp_path / "landing"
        (landing / "7").mkdir(parents=True)
        for index in range(12):
            image = np.zeros((8, 8), np.uint8)
            image[1 + index // 6, 1 : 2 + index % 6] = 255  # 12 distinct images
            Image.fromarray(image).save(landing / "7" / f"scan{index}.png")
        data_version_before = data_version(repo_copy)
        third = run_deployment(
            RETRAIN_DEPLOYMENT,
            parameters={"landing_dir": str(landing)},
            timeout=1200,
            poll_interval=2,
        )
        assert third.state.is_completed()
        assert data_version(repo_copy) != data_version_before
        with get_client(sync_client=True) as client:
            assert len(flow_runs_of(client, "train-model")) == 6
        assert not list((landing / "7").glob("*.png"))  # moved to landing/.processed
