"""Deployments as code: the `retrain` schedule and the `train-model` GPU deployment.

    PREFECT_API_URL=http://127.0.0.1:4200/api uv run python -m flows.deploy

creates the work pools (process type locally; see README for a Kubernetes pool) and applies:
- `retrain/retrain` on the cpu pool, cron from IMGFLOW_RETRAIN_CRON (default 02:00 UTC daily),
  at most one run at a time;
- `train-model/train-model` on the gpu pool, one training per worker slot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import Flow, flow

from tasks.settings import Settings

RETRAIN_DEPLOYMENT = "retrain/retrain"
TRAIN_MODEL_FLOW = "train-model"
TRAIN_MODEL_DEPLOYMENT = f"{TRAIN_MODEL_FLOW}/train-model"


def ensure_work_pool(name: str, concurrency_limit: int | None = None) -> None:
    """Create a process work pool unless one of that name exists (a cluster's may be k8s)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(
                WorkPoolCreate(name=name, type="process", concurrency_limit=concurrency_limit)
            )


def _flow_from_source(source: str, entrypoint: str) -> Flow[..., Any]:
    """`flow.from_source`, called synchronously (Prefect types it as maybe-a-coroutine)."""
    loaded = flow.from_source(source=source, entrypoint=entrypoint)
    if not isinstance(loaded, Flow):
        raise TypeError(f"flow.from_source returned {type(loaded).__name__} for {entrypoint}")
    return loaded


def _deploy(loaded: Flow[..., Any], **options: Any) -> UUID:
    """`Flow.deploy`, called synchronously, without Prefect's next-steps banner and warnings."""
    deployment_id = loaded.deploy(print_next_steps=False, ignore_warnings=True, **options)
    if not isinstance(deployment_id, UUID):
        raise TypeError(f"Flow.deploy returned {type(deployment_id).__name__}, not a UUID")
    return deployment_id


def apply_deployments(settings: Settings, source_is_local: bool = True) -> dict[str, UUID]:
    """Create or update both deployments from the flows' code at settings.source."""
    ensure_work_pool(settings.cpu_pool)
    ensure_work_pool(settings.gpu_pool)
    repo = settings.source if source_is_local else "."
    retrain = _flow_from_source(settings.source, "flows/retrain.py:retrain")
    train_model = _flow_from_source(settings.source, "flows/train_model.py:train_model")
    return {
        RETRAIN_DEPLOYMENT: _deploy(
            retrain,
            name="retrain",
            work_pool_name=settings.cpu_pool,
            cron=settings.retrain_cron,
            concurrency_limit=1,
            parameters={
                "repo": repo,
                "training_mode": settings.training_mode,
                "landing_dir": str(settings.landing_dir) if settings.landing_dir else None,
                "webhook_url": settings.webhook_url,
            },
            description="Ingest new data, validate, retrain CNN/RNN/GAN, evaluate and register.",
        ),
        TRAIN_MODEL_DEPLOYMENT: _deploy(
            train_model,
            name="train-model",
            work_pool_name=settings.gpu_pool,
            parameters={"repo": repo},
            description="Train one model on a GPU worker from a DVC data version.",
        ),
    }


def commit_deployment(commit: str, settings: Settings) -> str:
    """The `train-model/at-<commit>` deployment on the gpu pool, created or updated: its pull
    step clones exactly `commit` from the worker's IMGFLOW_GIT_URL (resolved on the worker, so
    each host may reach the repository its own way) into the flow run's working folder."""
    from prefect.client.orchestration import get_client
    from prefect.utilities.callables import parameter_schema

    from flows.train_model import train_model

    name = f"at-{commit[:12]}"
    clone = {
        "repository": "{{ $IMGFLOW_GIT_URL }}",
        "commit_sha": commit,
        "clone_directory_name": f"imgflow-{commit[:12]}",
    }
    with get_client(sync_client=True) as client:
        client.create_deployment(
            flow_id=client.create_flow_from_name(TRAIN_MODEL_FLOW),
            name=name,
            entrypoint="flows/train_model.py:train_model",
            work_pool_name=settings.gpu_pool,
            pull_steps=[{"prefect.deployments.steps.git_clone": clone}],
            parameter_openapi_schema=parameter_schema(train_model).model_dump_for_openapi(),
            description=f"Train one model on a GPU worker at commit {commit}.",
        )
    return f"{TRAIN_MODEL_FLOW}/{name}"


def main() -> int:
    settings = Settings.from_environment(Path("."))
    for name, deployment_id in apply_deployments(settings).items():
        print(f"deployment {name}: {deployment_id}")
    print(f"retrain schedule: '{settings.retrain_cron}' (UTC) on pool '{settings.cpu_pool}'")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
