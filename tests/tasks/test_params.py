"""Typed params: the repository's params.yaml loads, and every kind of bad value names its key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tasks.params import (
    CNNParams,
    GANParams,
    Params,
    ParamsError,
    PrepareParams,
    RegisterParams,
    TrainParams,
    ValidateParams,
    load_params,
    load_section,
    load_seed,
    parse_section,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
RAW = load_params(REPO_ROOT / "params.yaml")


def test_the_repository_params_load_typed_and_round_trip() -> None:
    params = Params.model_validate(RAW)
    assert params.seed == RAW["seed"]
    # Every key in the file is a declared field with the same value (nothing dropped or coerced).
    assert params.train.cnn.model_dump() == RAW["train"]["cnn"]
    assert params.train.gan.model_dump() == RAW["train"]["gan"]
    assert params.register_.thresholds_for("cnn") == RAW["register"]["thresholds"]["cnn"]


def test_load_section_reads_one_dotted_section(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(RAW))
    gan = load_section(GANParams, "train.gan", path)
    assert gan.latent_dim == RAW["train"]["gan"]["latent_dim"]
    assert load_seed(path) == RAW["seed"]
    with pytest.raises(ParamsError, match=r"missing key 'train\.vit'"):
        load_section(CNNParams, "train.vit", path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"epochs": -1},
            r"^params\.yaml: train\.cnn\.epochs: Input should be greater than 0, got -1$",
        ),
        ({"epochs": 1.5}, r"train\.cnn\.epochs: Input should be a valid integer, got 1\.5"),
        ({"epochs": True}, r"train\.cnn\.epochs: Input should be a valid integer"),
        ({"batch_size": "64"}, r"train\.cnn\.batch_size: Input should be a valid integer"),
        (
            {"optimizer": "adamax9"},
            r"optimizer: Input should be 'adam', 'adamw', 'sgd' or 'rmsprop'",
        ),
        ({"dropout": 1.0}, r"train\.cnn\.dropout: Input should be less than 1"),
        ({"filters": []}, r"train\.cnn\.filters: List should have at least 1 item"),
        ({"filters": [8, -1]}, r"train\.cnn: filters must be positive integers"),
        ({"augment": "yes"}, r"train\.cnn\.augment: Input should be a valid boolean"),
        (
            {"dense_unit": 3},
            r"cnn\.dense_unit is not a known key; allowed: epochs, steps, warmup_steps, batch_size",
        ),
    ],
)
def test_a_bad_model_param_names_its_key_and_allowed_values(change: dict, message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        parse_section(CNNParams, RAW["train"]["cnn"] | change, "train.cnn")


def test_a_missing_key_is_named() -> None:
    params = {k: v for k, v in RAW["train"]["cnn"].items() if k != "learning_rate"}
    with pytest.raises(ParamsError, match=r"^params\.yaml: train\.cnn\.learning_rate is missing$"):
        parse_section(CNNParams, params, "train.cnn")


def test_every_problem_is_listed_not_only_the_first() -> None:
    params = RAW["train"]["gan"] | {"beta_1": 1.0, "label_smoothing": 0.5}
    with pytest.raises(ParamsError) as caught:
        parse_section(GANParams, params, "train.gan")
    assert str(caught.value).splitlines() == [
        "params.yaml: train.gan.beta_1: Input should be less than 1, got 1.0",
        "params.yaml: train.gan.label_smoothing: Input should be less than 0.5, got 0.5",
    ]


def test_nested_sections_name_the_whole_path() -> None:
    validate = RAW["validate"] | {"class_kl": {"warning": 1.0, "error": 0.5}}
    with pytest.raises(ParamsError, match=r"validate\.class_kl: warning \(1\.0\) must not exceed"):
        parse_section(ValidateParams, validate, "validate")
    validate = RAW["validate"] | {"severity": {**RAW["validate"]["severity"], "drift": "fatal"}}
    with pytest.raises(ParamsError, match=r"validate\.severity\.drift: Input should be 'error' or"):
        parse_section(ValidateParams, validate, "validate")
    register = yaml.safe_load(yaml.safe_dump(RAW["register"]))
    register["thresholds"]["cnn"]["test_accuracy"] = {"minimum": 0.9}
    with pytest.raises(ParamsError, match=r"register\.thresholds\.cnn\.test_accuracy\.minimum is"):
        parse_section(RegisterParams, register, "register")
    register["thresholds"]["cnn"]["test_accuracy"] = {}
    with pytest.raises(ParamsError, match=r"register\.thresholds\.cnn\.test_accuracy: give min"):
        parse_section(RegisterParams, register, "register")


def test_split_fractions_must_leave_training_images() -> None:
    with pytest.raises(ParamsError, match=r"prepare\.val_fraction \+ prepare\.test_fraction"):
        parse_section(PrepareParams, {"val_fraction": 0.6, "test_fraction": 0.5}, "prepare")


def test_model_lookup_refuses_an_unknown_model() -> None:
    train = TrainParams.model_validate(RAW["train"])
    assert train.model("rnn") is train.rnn
    with pytest.raises(ParamsError, match="unknown model 'vit'"):
        train.model("vit")


def test_a_missing_params_file_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match=r"params\.yaml not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("- a list\n")
    with pytest.raises(ParamsError, match="must hold a mapping"):
        load_params(tmp_path / "params.yaml")
