"""Register: record every trained model in MLflow, add it to the registry and run the gate.

The DVC `register` stage (`python -m tasks.register`). One parent run per pipeline call holds the
data-validation summary and the run report; one nested run per model holds its params, history,
evaluation metrics, plots and the logged model, which becomes a new version of
`<dataset>-<model>` with the alias `challenger` and its lineage tags. The promotion gate then
decides whether it becomes `champion`, re-scoring the current champion on this run's test split.
A model whose artifact md5 equals the latest version's `model_md5` tag is not logged again: DVC
re-runs this stage whenever any one model changes. The work itself lives in tasks/registry/.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.locks import LockError
from tasks.params import ParamsError
from tasks.paths import CLASSIFIERS, MODEL_NAMES, PARAMS_FILE, REGISTRY_REPORT
from tasks.registry import tags as tag
from tasks.registry.champion import PromotionError, promotion_lock, registry_uri
from tasks.registry.gan_judge import GanJudge, challenger_scores, gan_judge
from tasks.registry.gate import gate
from tasks.registry.inputs import (
    ModelInputs,
    RegisterError,
    RunInputs,
    read_model_inputs,
    read_run_inputs,
    require_splits,
)
from tasks.registry.lineage import git_commit
from tasks.registry.registry_report import format_table, write_registry_report
from tasks.registry.run_report import build_report, write_report
from tasks.registry.scoring import ChampionScorer
from tasks.registry.stage_params import StageParams
from tasks.registry.tracking import (
    active_run_id,
    configure_mlflow,
    log_gate_metrics,
    log_model_run,
    log_report,
    parent_run,
    tracking_uri,
)
from tasks.registry.versions import (
    Lineage,
    RegisteredModel,
    latest_version,
    new_entry,
    register_version,
    reused_entry,
    scalar_metrics,
    validation_summary,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["RegisterError", "StageParams", "main", "register_models"]

# (inputs, None): a new version to register; (inputs, entry): a version registered before a
# crash that the gate never decided on: it is gated now, not registered again.
Pending = list[tuple[ModelInputs, RegisteredModel | None]]


@dataclasses.dataclass(frozen=True)
class _Call:
    """What every step of one register call shares."""

    client: MlflowClient
    root: Path
    params: StageParams
    run: RunInputs


def _sort_out(
    call: _Call, all_inputs: Sequence[ModelInputs]
) -> tuple[dict[str, RegisteredModel], Pending]:
    """Models whose registered version is unchanged and gated (done), and the rest (pending)."""
    done: dict[str, RegisteredModel] = {}
    pending: Pending = []
    for inputs in all_inputs:
        latest = latest_version(call.client, f"{call.run.dataset}-{inputs.model}")
        if latest is None or latest.tags.get(tag.MODEL_MD5) != inputs.model_md5:
            pending.append((inputs, None))
        elif tag.GATE_DECISION in latest.tags:
            done[inputs.model] = reused_entry(call.client, inputs, latest)
        else:
            pending.append((inputs, reused_entry(call.client, inputs, latest)))
    return done, pending


def _register_new(call: _Call, inputs: ModelInputs, lineage: Lineage) -> RegisteredModel:
    """Log one model as a nested run of the active parent run and register it."""
    name = f"{call.run.dataset}-{inputs.model}"
    run_id, model_uri = log_model_run(
        call.client, call.root, inputs, call.params, call.run.meta, lineage.pipeline_run
    )
    trained_params = call.params.trained_params(inputs.model, inputs.record)
    version = register_version(call.client, model_uri, name, inputs, trained_params, lineage)
    return new_entry(inputs, name, version, run_id)


def _find_or_register(call: _Call, inputs: ModelInputs, lineage: Lineage) -> RegisteredModel:
    """This model's version: the one another run (maybe on another host) registered for the
    same files meanwhile, else a new one. Under the model's lock, so two runs never register
    the same files twice nor race for a version number (MLflow has no compare-and-set)."""
    name = f"{call.run.dataset}-{inputs.model}"
    with promotion_lock(name, registry_uri(call.client)):
        latest = latest_version(call.client, name)
        if latest is not None and latest.tags.get(tag.MODEL_MD5) == inputs.model_md5:
            return reused_entry(call.client, inputs, latest)
        return _register_new(call, inputs, lineage)


def _judged_challenger(
    call: _Call, entry: RegisteredModel, inputs: ModelInputs
) -> tuple[GanJudge, dict[str, Any]]:
    """A new GAN's judge and the challenger's metrics under it.

    When the judge is not this run's CNN the challenger is re-scored (logged to its run as
    gate_*); the judge is recorded as the version tag `gate.judge` either way.
    """
    judge = gan_judge(call.client, call.root, call.run.dataset)
    call.client.set_model_version_tag(
        entry.registered_name, entry.version, tag.GATE_JUDGE, judge.label
    )
    evaluate, seed = call.params.evaluate, call.params.seed
    rescored = challenger_scores(call.root, inputs, judge, call.run.class_names, evaluate, seed)
    if rescored is None:
        return judge, inputs.metrics
    log_gate_metrics(call.client, entry.run_id, scalar_metrics(rescored))
    return judge, rescored


def _run_gate(call: _Call, entry: RegisteredModel, inputs: ModelInputs) -> RegisteredModel:
    """Run the promotion gate on a version; the entry with its decision and both scores.

    A GAN is scored, challenger and champion alike, by the judge CNN (see tasks.registry.gan_judge).
    """
    judge: GanJudge | None = None
    metrics = inputs.metrics
    if inputs.model not in CLASSIFIERS:
        judge, metrics = _judged_challenger(call, entry, inputs)
    score_champion = ChampionScorer(
        call.root,
        inputs.model,
        entry.registered_name,
        call.run.class_names,
        call.params.evaluate,
        call.params.seed,
        judge.network if judge else None,
    )
    decision = gate(
        call.client,
        entry.registered_name,
        entry.version,
        metrics,
        metric=entry.headline_metric,
        thresholds=call.params.register.thresholds_for(inputs.model),
        tolerance=call.params.register.tolerance,
        score_champion=score_champion,
    )
    return dataclasses.replace(
        entry,
        decision=decision.decision,
        reason=decision.reason,
        champion_version=decision.champion_version,
        champion_score=decision.champion_score,
        champion_metrics=scalar_metrics(
            score_champion.scores.get(decision.champion_version or "", {})
        ),
        metrics=scalar_metrics(metrics),
        headline_value=float(metrics[entry.headline_metric]),
        judge=judge.label if judge else entry.judge,
    )


def _write_run_report(
    call: _Call, entries: Sequence[RegisteredModel], commit: str
) -> tuple[Path, Path]:
    report = build_report(
        call.root,
        entries,
        call.run.validation,
        data_version=call.run.data_version,
        git_commit=commit,
        mlflow_run_id=active_run_id(),
        tracking_uri=tracking_uri(),
    )
    return write_report(call.root, report)


def register_models(
    root: Path,
    params: StageParams,
    models: Sequence[str] = MODEL_NAMES,
    pipeline_run_name: str | None = None,
) -> list[RegisteredModel]:
    """Log and register each model whose artifact changed; reuse the registered version otherwise.

    Each new version becomes `challenger` and goes through the promotion gate. All inputs are
    read and checked before MLflow is touched, so a bad input logs nothing and moves no alias.
    The parent run is only created when at least one model is new; the run report is written
    to reports/ and logged to it.
    """
    root = Path(root)
    run = read_run_inputs(root)
    all_inputs = [read_model_inputs(root, model) for model in models]
    require_splits(root)
    call = _Call(configure_mlflow(), root, params, run)
    results, pending = _sort_out(call, all_inputs)
    commit = git_commit(root)
    if not pending:
        entries = [results[inputs.model] for inputs in all_inputs]
        _write_run_report(call, entries, commit)
        return entries
    pipeline_run = uuid.uuid4().hex
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_name = pipeline_run_name or f"pipeline-{run.dataset}-{stamp}"
    lineage = Lineage(run.data_version, commit, pipeline_run, validation_summary(run.validation))
    experiment = params.register.experiment
    with parent_run(root, experiment, run_name, run, commit, pipeline_run):
        for inputs, entry in pending:
            registered = entry or _find_or_register(call, inputs, lineage)
            gated = registered.reused and registered.decision  # by the run that registered it
            results[inputs.model] = registered if gated else _run_gate(call, registered, inputs)
        entries = [results[inputs.model] for inputs in all_inputs]
        log_report(_write_run_report(call, entries, commit))
    return entries


def main(argv: Sequence[str] | None = None) -> int:
    """CLI for the DVC `register` stage: register, write reports/registry.json, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root")
    parser.add_argument(
        "--params", type=Path, default=None, help=f"params file (default: <root>/{PARAMS_FILE})"
    )
    args = parser.parse_args(argv)
    try:
        params = StageParams.load(args.params or args.root / PARAMS_FILE)
        models = register_models(args.root, params)
    except (RegisterError, ParamsError, PromotionError, LockError) as error:
        print(f"register: {error}", file=sys.stderr)
        return 1
    write_registry_report(models, args.root / REGISTRY_REPORT)
    print(format_table(models))
    for entry in models:
        if entry.reason:
            print(f"{entry.registered_name} v{entry.version}: {entry.decision}: {entry.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
