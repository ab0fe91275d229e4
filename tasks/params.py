"""params.yaml as typed sections: one pydantic model per stage section, loaded once per stage.

Every stage reads only its own section (plus the shared seed), exactly the keys dvc.yaml lists
for it. A missing, unknown or wrong key fails with its dotted path and the allowed values, before
any work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from tasks.paths import MODEL_NAMES, PARAMS_FILE

Severity = Literal["error", "warning"]
Optimizer = Literal["adam", "adamw", "sgd", "rmsprop"]
OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "sgd", "rmsprop")


class ParamsError(ValueError):
    """A params.yaml value is missing or invalid; the message names the key."""


class Section(BaseModel):
    """Base of every section: unknown keys are errors, numbers are not coerced from strings."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


ColorMode = Literal["grayscale", "rgb", "rgba"]
Interpolation = Literal["bilinear", "nearest", "bicubic", "area", "lanczos"]


class PrepareParams(Section):
    """The split, and the image policy (Keras `image_dataset_from_directory` names): with
    `image_size` null every image keeps its own size, with `color_mode` null grey images stay
    grey and colour ones become rgb."""

    val_fraction: float = Field(gt=0, lt=1)
    test_fraction: float = Field(gt=0, lt=1)
    image_size: list[int] | None = Field(default=None, min_length=2, max_length=2)  # [H, W]
    color_mode: ColorMode | None = None
    crop_to_aspect_ratio: bool = False
    pad_to_aspect_ratio: bool = False
    interpolation: Interpolation = "bilinear"

    @model_validator(mode="after")
    def _leaves_training_images(self) -> Self:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                "prepare.val_fraction + prepare.test_fraction must be below 1 "
                f"(got {self.val_fraction} + {self.test_fraction})"
            )
        return self

    @model_validator(mode="after")
    def _one_aspect_rule(self) -> Self:
        if self.crop_to_aspect_ratio and self.pad_to_aspect_ratio:
            raise ValueError(
                "prepare.crop_to_aspect_ratio and prepare.pad_to_aspect_ratio cannot both be "
                "true: crop to the target aspect ratio, pad to it, or neither (stretch)"
            )
        if self.image_size is not None and min(self.image_size) < 1:
            raise ValueError(f"prepare.image_size must be positive, got {list(self.image_size)}")
        return self


class Band(Section):
    """A check with two thresholds: above `warning` it warns, above `error` it stops the run."""

    warning: float = Field(ge=0)
    error: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.warning > self.error:
            raise ValueError(f"warning ({self.warning}) must not exceed error ({self.error})")
        return self


class ValidateParams(Section):
    pixel_min: float
    pixel_max: float = Field(ge=0)
    min_classes: int = Field(ge=0)
    min_images_per_class: int = Field(ge=0)
    max_blank_share: float = Field(ge=0)
    imbalance_ratio: Band
    class_kl: Band
    expected_distribution: Literal["uniform", "accepted"] = "uniform"
    split_kl_max: float = Field(ge=0)
    near_duplicate_distance: int = Field(ge=0)
    drift_kl_max: float = Field(ge=0)
    # Check name -> severity; the validation package checks the names against its checks.
    severity: dict[str, Severity]

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.pixel_min > self.pixel_max:
            raise ValueError("pixel_min must not exceed pixel_max")
        return self


class CNNParams(Section):
    epochs: int = Field(gt=0)  # at most this many epochs
    steps: int | None = Field(default=None, gt=0)  # budget in optimiser steps (see tasks/budget)
    warmup_steps: int = Field(default=0, ge=0)  # linear learning-rate warm-up from 0
    batch_size: int = Field(gt=0)
    optimizer: Optimizer
    learning_rate: float = Field(gt=0)
    filters: list[int] = Field(min_length=1)
    dense_units: int = Field(gt=0)
    dropout: float = Field(ge=0, lt=1)
    augment: bool = False
    early_stopping_patience: int = Field(default=5, gt=0)
    jit_compile: bool = False
    steps_per_execution: int = Field(default=1, gt=0)

    @model_validator(mode="after")
    def _positive_filters(self) -> Self:
        if not all(value > 0 for value in self.filters):
            raise ValueError(f"filters must be positive integers, got {self.filters}")
        return self


class RNNParams(Section):
    epochs: int = Field(gt=0)  # at most this many epochs
    steps: int | None = Field(default=None, gt=0)  # budget in optimiser steps (see tasks/budget)
    warmup_steps: int = Field(default=0, ge=0)  # linear learning-rate warm-up from 0
    batch_size: int = Field(gt=0)
    optimizer: Optimizer
    learning_rate: float = Field(gt=0)
    lstm_units: list[int] = Field(min_length=1)
    dropout: float = Field(ge=0, lt=1)
    bidirectional: bool = False
    early_stopping_patience: int = Field(default=5, gt=0)
    jit_compile: bool = False
    unroll: bool = False
    steps_per_execution: int = Field(default=1, gt=0)

    @model_validator(mode="after")
    def _positive_units(self) -> Self:
        if not all(value > 0 for value in self.lstm_units):
            raise ValueError(f"lstm_units must be positive integers, got {self.lstm_units}")
        return self


class GANParams(Section):
    epochs: int = Field(gt=0)  # at most this many epochs
    steps: int | None = Field(default=None, gt=0)  # budget in optimiser steps (see tasks/budget)
    batch_size: int = Field(gt=0)
    latent_dim: int = Field(gt=0)
    generator_learning_rate: float = Field(gt=0)
    discriminator_learning_rate: float = Field(gt=0)
    beta_1: float = Field(default=0.5, ge=0, lt=1)
    base_filters: int = Field(default=64, gt=0)
    class_loss_weight: float = Field(default=1.0, ge=0)
    label_smoothing: float = Field(default=0.0, ge=0, lt=0.5)
    sample_every: int = Field(default=10, gt=0)


ModelParams = CNNParams | RNNParams | GANParams


class TrainParams(Section):
    deterministic: bool = False
    cnn: CNNParams
    rnn: RNNParams
    gan: GANParams

    def model(self, name: str) -> ModelParams:
        """The section of one model (`cnn`, `rnn` or `gan`)."""
        if name not in MODEL_NAMES:
            raise ParamsError(f"unknown model '{name}'; choose one of {', '.join(MODEL_NAMES)}")
        params: ModelParams = getattr(self, name)
        return params


class EvaluateParams(Section):
    gan_samples: int = Field(ge=2)  # generated images scored by the judge CNN
    confidence: float = Field(gt=0, le=1)  # judge confidence that makes an image recognisable


class Bounds(Section):
    """An absolute gate threshold on one metric: a minimum, a maximum, or both."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.min is None and self.max is None:
            raise ValueError("give min and/or max")
        return self

    def as_dict(self) -> dict[str, float]:
        return {
            key: value for key, value in (("min", self.min), ("max", self.max)) if value is not None
        }


class ModelThresholds(Section):
    cnn: dict[str, Bounds]
    rnn: dict[str, Bounds]
    gan: dict[str, Bounds]


class RegisterParams(Section):
    experiment: str = Field(min_length=1)
    tolerance: float = Field(ge=0)
    thresholds: ModelThresholds

    def thresholds_for(self, model: str) -> dict[str, dict[str, float]]:
        """One model's thresholds as {metric: {"min"|"max": value}}."""
        bounds: dict[str, Bounds] = getattr(self.thresholds, model)
        return {metric: bound.as_dict() for metric, bound in bounds.items()}


class Params(Section):
    """The whole file; stages load only their section with `load_section`."""

    seed: int
    prepare: PrepareParams
    validate_: ValidateParams = Field(alias="validate")
    train: TrainParams
    evaluate: EvaluateParams
    register_: RegisterParams = Field(alias="register")

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


SectionModel = TypeVar("SectionModel", bound=BaseModel)


def load_params(path: Path | str = PARAMS_FILE) -> dict[str, Any]:
    """Read the whole params file as plain data; raises ParamsError when missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path} not found: run from the repository root or pass --params")
    with path.open() as handle:
        params = yaml.safe_load(handle)
    if not isinstance(params, dict):
        raise ParamsError(f"{path} must hold a mapping of stage sections, got {type(params)}")
    return params


def section(params: dict[str, Any], dotted_key: str) -> Any:
    """Return params[a][b] for "a.b", raising ParamsError that names the missing key."""
    value: Any = params
    walked: list[str] = []
    for part in dotted_key.split("."):
        walked.append(part)
        if not isinstance(value, dict) or part not in value:
            raise ParamsError(f"params.yaml: missing key '{'.'.join(walked)}'")
        value = value[part]
    return value


def parse_section(model: type[SectionModel], data: Any, key: str) -> SectionModel:
    """Validate plain data against a section model; errors name the dotted key."""
    try:
        return model.model_validate(data)
    except PydanticValidationError as error:
        raise ParamsError(_describe(error, key, model)) from None


def load_section(
    model: type[SectionModel], key: str, path: Path | str = PARAMS_FILE
) -> SectionModel:
    """Load and check one section of params.yaml (`key` is dotted, e.g. "train.cnn")."""
    return parse_section(model, section(load_params(path), key), key)


def load_seed(path: Path | str = PARAMS_FILE) -> int:
    """The shared seed (every stage that draws random numbers lists `seed` in dvc.yaml)."""
    seed = section(load_params(path), "seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ParamsError(f"params.yaml: seed must be an integer, got {seed!r}")
    return seed


def _allowed_keys(model: type[BaseModel], location: tuple[int | str, ...]) -> list[str]:
    """The field names of the (nested) model at `location`, for an unknown-key message."""
    current: Any = model
    for part in location[:-1]:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        annotation = fields[part].annotation
        current = annotation if isinstance(annotation, type) else None
    fields = getattr(current, "model_fields", None) or {}
    return [field.alias or name for name, field in fields.items()]


def _describe(error: PydanticValidationError, key: str, model: type[BaseModel]) -> str:
    """One line per problem: `params.yaml: <dotted key>: <what is wrong>, got <value>`."""
    lines = []
    for problem in error.errors():
        location = tuple(problem["loc"])
        dotted = ".".join([key, *(str(part) for part in location)])
        kind = problem["type"]
        if kind == "missing":
            lines.append(f"params.yaml: {dotted} is missing")
        elif kind == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(model, location))
            lines.append(f"params.yaml: {dotted} is not a known key; allowed: {allowed}")
        else:
            message = problem["msg"].removeprefix("Value error, ")
            got = f", got {problem['input']!r}" if location else ""
            lines.append(f"params.yaml: {dotted}: {message}{got}")
    return "\n".join(lines)
