"""Re-scoring registered versions on this run's test split, so the gate compares a challenger
with its champion on the same data (never numbers from different data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.params import EvaluateParams
from tasks.paths import CLASSIFIERS, SPLITS_FILE


class MissingJudgeError(ValueError):
    """A generator can only be scored by a judge classifier."""


def load_keras_version(model_uri: str) -> Any:
    """A registered Keras model as a native Keras model, loaded in safe mode (no code runs)."""
    import mlflow

    return mlflow.tensorflow.load_model(model_uri, keras_model_kwargs={"safe_mode": True})


def score_network(
    root: Path,
    model: str,
    network: Any,
    class_names: list[str],
    evaluate: EvaluateParams,
    seed: int,
    judge: Any = None,
) -> dict[str, Any]:
    """Metrics of one network on this run's test split: a classifier on its labels, a generator
    through the `judge` classifier."""
    from tasks.evaluate import score_classifier, score_generator
    from tasks.prepare import load_splits

    splits = load_splits(root / SPLITS_FILE)
    if model in CLASSIFIERS:
        return score_classifier(network, splits.x["test"], splits.y["test"], class_names)
    if judge is None:
        raise MissingJudgeError(f"scoring a {model} needs a judge classifier")
    train = (splits.x["train"], splits.y["train"])
    test = (splits.x["test"], splits.y["test"])
    return score_generator(network, judge, train, test, class_names, evaluate, seed)


class ChampionScorer:
    """score(version) -> metrics of that registered version on this run's test split.

    A GAN's versions are scored by `judge`, the same CNN that scores its challenger at the gate.
    Results are kept in `scores` so the report can show every re-scored metric.
    """

    def __init__(
        self,
        root: Path,
        model: str,
        registered_name: str,
        class_names: list[str],
        evaluate: EvaluateParams,
        seed: int,
        judge: Any = None,
    ) -> None:
        if model not in CLASSIFIERS and judge is None:
            raise MissingJudgeError("a GAN's champion needs the gate's judge CNN")
        self.root, self.model, self.registered_name = root, model, registered_name
        self.class_names, self.evaluate, self.seed, self.judge = class_names, evaluate, seed, judge
        self.scores: dict[str, dict[str, Any]] = {}

    def __call__(self, version: str) -> dict[str, Any]:
        if version not in self.scores:
            network = load_keras_version(f"models:/{self.registered_name}/{version}")
            self.scores[version] = score_network(
                self.root,
                self.model,
                network,
                self.class_names,
                self.evaluate,
                self.seed,
                self.judge,
            )
        return self.scores[version]
