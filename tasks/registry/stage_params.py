"""The params.yaml sections the register stage reads, typed and checked once at start.

dvc.yaml lists the same keys for the stage (seed, prepare, train, evaluate, register): prepare
and train are logged with each model, evaluate and seed re-score champions, register drives the
gate. A bad value fails here, naming its dotted key, before MLflow is touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.params import (
    EvaluateParams,
    PrepareParams,
    RegisterParams,
    TrainParams,
    load_section,
    load_seed,
)
from tasks.paths import PARAMS_FILE


@dataclass(frozen=True)
class StageParams:
    seed: int
    prepare: PrepareParams
    train: TrainParams
    evaluate: EvaluateParams
    register: RegisterParams

    @classmethod
    def load(cls, path: Path | str = PARAMS_FILE) -> StageParams:
        """Read the stage's sections from `path`; raises ParamsError naming a bad key."""
        return cls(
            seed=load_seed(path),
            prepare=load_section(PrepareParams, "prepare", path),
            train=load_section(TrainParams, "train", path),
            evaluate=load_section(EvaluateParams, "evaluate", path),
            register=load_section(RegisterParams, "register", path),
        )

    def trained_params(self, model: str, record: dict[str, Any]) -> dict[str, Any]:
        """The params a model was trained with: its train.json's, else params.yaml's section."""
        recorded = record.get("params")
        return recorded if recorded else self.train.model(model).model_dump()

    def shared_train(self) -> dict[str, Any]:
        """Settings every model's training shares (train.* that is not a model's section)."""
        return {"deterministic": self.train.deterministic}
