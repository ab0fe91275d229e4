"""`imgflow`: the command line for users. `imgflow run` runs the Prefect retraining flow;
`imgflow rollback` and `imgflow lineage` act on the MLflow model registry."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.ingest import SOURCES

if TYPE_CHECKING:
    from mlflow import MlflowClient

MLFLOW_UI_PORT = 5000
# The temporary local Prefect server needs ~20 s on a new PREFECT_HOME (database migrations),
# which is Prefect's default start-up timeout; this machine has no internet for telemetry.
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def _run(args: argparse.Namespace) -> int:
    """Run the flow holding this checkout's run lock, taken before anything heavy is imported:
    a second run stops at once with one line naming the running one."""
    from tasks.locks import RunInProgressError, run_lock

    try:
        with run_lock(Path.cwd()):
            return _run_flow(args)
    except RunInProgressError as error:
        print(error, file=sys.stderr)
        return 1


def _run_flow(args: argparse.Namespace) -> int:
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    from flows.retrain import retrain
    from tasks.handoff import HandoffError
    from tasks.preflight import PreflightError
    from tasks.report import format_table
    from tasks.settings import Settings
    from tasks.stages import StageError

    try:
        summary = retrain(
            source=args.source,
            path=str(args.path) if args.path else None,
            name=args.name,
            repo=str(Path.cwd()),
            training_mode=Settings.from_environment(Path.cwd()).training_mode,
        )
    except (StageError, PreflightError, HandoffError) as error:
        print(f"\nimgflow run failed: {error}", file=sys.stderr)
        return 1
    print()
    print(f"dataset {summary.dataset}, data version {summary.data_version}")
    print(f"stages run: {', '.join(summary.stages_run) or 'none (everything up to date)'}")
    print(format_table(summary.models))
    print(f"\nReview the runs in the MLflow UI: `make ui`, then http://127.0.0.1:{MLFLOW_UI_PORT}")
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from tasks.ingest import IngestError, ensure_dataset

    try:
        changed = ensure_dataset(args.source, args.path, args.name, Path.cwd())
    except IngestError as error:
        print(f"ingest failed, data/ left unchanged: {error}", file=sys.stderr)
        return 1
    print("data/ updated and versioned (data.dvc)" if changed else "data/ already holds it")
    return 0


def _ui(args: argparse.Namespace) -> int:
    from tasks.settings import Settings

    uri = Settings.from_environment().tracking_uri
    print(f"MLflow UI: http://127.0.0.1:{args.port} (store {uri}); Ctrl-C stops it")
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
    ]
    os.execv(sys.executable, command)
    return 0


def _registry_client() -> MlflowClient:
    from mlflow import MlflowClient

    from tasks.settings import Settings

    uri = Settings.from_environment().tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _rollback(args: argparse.Namespace) -> int:
    from tasks.registry.champion import PromotionError
    from tasks.registry.rollback import rollback

    try:
        done = rollback(
            _registry_client(),
            args.name,
            reason=args.reason,
            version=args.version,
            force=args.force,
            user=args.user,
        )
    except PromotionError as error:
        print(f"rollback refused: {error}", file=sys.stderr)
        return 1
    print(
        f"{done.name}: champion v{done.from_version or '-'} -> v{done.to_version} "
        f"by {done.by} at {done.at}{' (forced)' if done.forced else ''}: {done.reason}"
    )
    return 0


def _lineage(args: argparse.Namespace) -> int:
    from tasks.registry.describe import describe_version
    from tasks.registry.lineage import LineageError

    try:
        print(describe_version(_registry_client(), args.name, args.ref))
    except LineageError as error:
        print(f"lineage: {error}", file=sys.stderr)
        return 1
    return 0


def _worker(args: argparse.Namespace) -> int:
    from flows.worker import WorkerConfigError, start_worker
    from tasks.preflight import PreflightError

    try:
        start_worker(args.pool, args.limit)  # returns only on failure: it becomes the worker
    except (WorkerConfigError, PreflightError) as error:
        print(error, file=sys.stderr)
    return 1


def _preflight(args: argparse.Namespace) -> int:
    """Check every configured shared service (MLflow, Prefect API, S3, DVC remote) answers
    and accepts our credentials; one line per check, exit 1 when any fails."""
    from tasks.preflight import format_results, preflight
    from tasks.settings import Settings

    results = preflight(Settings.from_environment(Path.cwd()), Path.cwd())
    print(format_results(results))
    return 0 if all(result.ok for result in results) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (
        ("run", "ingest (if needed) and run every out-of-date stage through Prefect"),
        ("ingest", "materialise a dataset into data/ and version it with DVC"),
    ):
        command = commands.add_parser(name, help=helptext)
        command.add_argument("--source", choices=SOURCES, default="digits")
        command.add_argument("--path", type=Path, help="dataset folder for idx and folder")
        command.add_argument("--name", help="dataset name for registered models")
    ui = commands.add_parser("ui", help="start the MLflow UI on 127.0.0.1")
    ui.add_argument("--port", type=int, default=MLFLOW_UI_PORT)
    back = commands.add_parser(
        "rollback", help="move a registered model's champion back (previous or --version)"
    )
    back.add_argument("name", help="registered model, e.g. digits-cnn")
    back.add_argument("--version", help="version to make champion (default: previous champion)")
    back.add_argument("--reason", required=True, help="why (recorded as a tag)")
    back.add_argument("--force", action="store_true", help="allow a gate-rejected version")
    back.add_argument("--user", help="who (default: $IMGFLOW_USER or the login name)")
    lineage = commands.add_parser(
        "lineage", help="print the run, params, metrics, data version and commit of a version"
    )
    lineage.add_argument("name", help="registered model, e.g. digits-cnn")
    lineage.add_argument("ref", help="version number or @alias, e.g. 3 or @champion")
    commands.add_parser(
        "preflight", help="check the configured MLflow, Prefect API, S3 and DVC remote answer"
    )
    worker = commands.add_parser(
        "worker", help="join a work pool (default gpu) and train the runs handed to it"
    )
    worker.add_argument("--pool", help="work pool (default $IMGFLOW_GPU_POOL or gpu)")
    worker.add_argument("--limit", type=int, help="trainings at once ($IMGFLOW_GPU_SLOTS)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "source", None) in ("idx", "folder") and not args.path:
        build_parser().error(f"--source {args.source} needs --path")
    handlers = {
        "run": _run,
        "ingest": _ingest,
        "ui": _ui,
        "rollback": _rollback,
        "lineage": _lineage,
        "preflight": _preflight,
        "worker": _worker,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
