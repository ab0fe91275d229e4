"""Deployments as code: the `retrain` schedule and the `train-model` GPU deployment.

    PREFECT_API_URL=http://127.0.0.1:4200/api uv run python -m flows.deploy

creates the work pools (process type locally; see README for a Kubernetes pool) and applies:
- `retrain/retrain` on the cpu pool, cron from IMGFLOW_RETRAIN_CRON (default 02:00 UTC daily),
  at most one run at a time;
- `train-model/train-model` on the gpu pool, one training per worker slot.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from prefect import flow

from tasks.settings import Settings

RETRAIN_DEPLOYMENT = "retrain/retrain"
TRAIN_MODEL_DEPLOYMENT = "train-model/train-model"


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


def apply_deployments(settings: Settings, source_is_local: bool = True) -> dict[str, UUID]:
    """Create or update both deployments from the flows' code at settings.source."""
    ensure_work_pool(settings.cpu_pool)
    ensure_work_pool(settings.gpu_pool)
    repo = settings.source if source_is_local else "."
    retrain = flow.from_source(source=settings.source, entrypoint="flows/retrain.py:retrain")
    train_model = flow.from_source(
        source=settings.source, entrypoint="flows/train_model.py:train_model"
    )
    return {
        RETRAIN_DEPLOYMENT: retrain.deploy(
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
            print_next_steps=False,
            ignore_warnings=True,
        ),
        TRAIN_MODEL_DEPLOYMENT: train_model.deploy(
            name="train-model",
            work_pool_name=settings.gpu_pool,
            parameters={"repo": repo},
            description="Train one model on a GPU worker from a DVC data version.",
            print_next_steps=False,
            ignore_warnings=True,
        ),
    }


def main() -> int:
    settings = Settings.from_environment(Path("."))
    for name, deployment_id in apply_deployments(settings).items():
        print(f"deployment {name}: {deployment_id}")
    print(f"retrain schedule: '{settings.retrain_cron}' (UTC) on pool '{settings.cpu_pool}'")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
