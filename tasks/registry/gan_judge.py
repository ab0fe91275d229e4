"""The CNN that judges both GANs at the gate.

The GAN has no labels to score against, so a classifier scores its samples. Both generators (the
challenger and the champion) must be judged by the same classifier, and by one that earned trust:
the current `champion` of `<dataset>-cnn` (after this run's CNN went through its own gate), or
this run's CNN when there is no champion yet or the champion is this run's CNN. Judging by an
unvetted new CNN would let a weak classifier collapse both GANs' scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.paths import CLASSIFIER_FILE, JUDGE_MODEL, model_dir
from tasks.registry import tags as tag
from tasks.registry.inputs import ModelInputs, require_file
from tasks.registry.lineage import dir_md5
from tasks.registry.scoring import load_keras_version, score_network

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from tasks.params import EvaluateParams


@dataclass(frozen=True)
class GanJudge:
    """The judge network, how tags and the report name it, and whether it is this run's CNN."""

    network: Any
    label: str
    is_run_cnn: bool


def gan_judge(client: MlflowClient, root: Path, dataset: str) -> GanJudge:
    """Resolve the gate's judge for `<dataset>-gan` (see the module docstring)."""
    import keras
    from mlflow.exceptions import MlflowException

    name = f"{dataset}-{JUDGE_MODEL}"
    run_cnn = model_dir(JUDGE_MODEL, root)
    try:
        champion = client.get_model_version_by_alias(name, tag.CHAMPION)
    except MlflowException:
        champion = None
    if champion is not None and champion.tags.get(tag.MODEL_MD5) != dir_md5(run_cnn):
        network = load_keras_version(f"models:/{name}/{champion.version}")
        return GanJudge(network, f"{name} v{champion.version} (champion)", is_run_cnn=False)
    network = keras.models.load_model(
        require_file(run_cnn / CLASSIFIER_FILE, f"train@{JUDGE_MODEL}"), safe_mode=True
    )
    label = (
        f"{name} v{champion.version} (champion, this run's CNN)"
        if champion is not None
        else "this run's CNN (no champion CNN yet)"
    )
    return GanJudge(network, label, is_run_cnn=True)


def challenger_scores(
    root: Path,
    inputs: ModelInputs,
    judge: GanJudge,
    class_names: list[str],
    evaluate: EvaluateParams,
    seed: int,
) -> dict[str, Any] | None:
    """The new generator's metrics under `judge`, or None when the judge is this run's CNN
    (evaluate@gan's metrics already are exactly that)."""
    import keras

    if judge.is_run_cnn:
        return None
    generator = keras.models.load_model(inputs.keras_file, safe_mode=True)
    return score_network(root, inputs.model, generator, class_names, evaluate, seed, judge.network)
