"""Train: params are checked before any training, naming the params.yaml key."""

from __future__ import annotations

import pytest

from tasks.params import ParamsError
from tasks.train import check_image_shape, check_train_params

CNN = {
    "epochs": 2,
    "batch_size": 32,
    "optimizer": "adam",
    "learning_rate": 0.001,
    "filters": [8, 16],
    "dense_units": 16,
    "dropout": 0.2,
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": -1}, r"train\.cnn\.epochs must be positive"),
        ({"epochs": 1.5}, r"train\.cnn\.epochs must be"),
        ({"optimizer": "adamax9"}, r"train\.cnn\.optimizer 'adamax9' is unknown"),
        ({"dropout": 1.0}, r"train\.cnn\.dropout"),
        ({"filters": []}, r"train\.cnn\.filters"),
    ],
)
def test_bad_cnn_params_fail_naming_the_key(change: dict, message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        check_train_params("cnn", CNN | change)


def test_missing_key_is_named() -> None:
    params = dict(CNN)
    del params["learning_rate"]
    with pytest.raises(ParamsError, match=r"train\.cnn\.learning_rate is missing"):
        check_train_params("cnn", params)


def test_image_too_small_for_the_cnn_pooling_blocks() -> None:
    with pytest.raises(ParamsError, match=r"train\.cnn\.filters has 4 pooling blocks"):
        check_image_shape("cnn", CNN | {"filters": [8, 8, 8, 8]}, (8, 8, 1))
    check_image_shape("cnn", CNN, (8, 8, 1))


def test_gan_needs_sizes_divisible_by_four() -> None:
    with pytest.raises(ParamsError, match=r"train\.gan needs image height and width"):
        check_image_shape("gan", {}, (10, 10, 1))
