"""Convolutional image classifiers (Keras Functional API).

Every model takes raw images of shape (height, width, channels) with pixel values 0..255
(float or uint8 dtype) and rescales them itself, so a served model predicts on raw images.
The final softmax layer computes in float32, which keeps the outputs stable under the
`mixed_float16` policy.
"""

from collections.abc import Sequence

import keras
from keras import layers

from models._checks import (
    check_image_shape,
    check_num_classes,
    check_positive_int,
    check_positive_sequence,
    check_rate,
)

EMBEDDING_LAYER_NAME = "embedding"
"""Name of the last hidden Dense layer of `build_cnn`: the feature extractor for Frechet distance
is `keras.Model(model.input, model.get_layer(EMBEDDING_LAYER_NAME).output)`."""

FLATTEN_MAX_CELLS = 49
"""Flatten the last feature map when it has at most this many cells (height x width, e.g. 7x7 for
28x28 MNIST after two blocks); larger maps use GlobalAveragePooling2D. Flatten keeps the spatial
layout, which is more accurate on small digit images, while global pooling keeps the Dense layer
small on large images."""


BN_MOMENTUM = 0.9
"""Batch-norm moving-average momentum. Keras' 0.99 needs hundreds of steps before the inference
statistics match the weights; small datasets (digits: 23 steps per epoch) validate with stale
statistics and early stopping then stops at random. 0.9 follows the weights within ~20 steps."""


def _conv_block(inputs: keras.KerasTensor, filters: int, index: int) -> keras.KerasTensor:
    """Two (Conv2D -> BatchNormalization -> ReLU) units followed by a 2x2 max pooling."""
    x = inputs
    for unit in (1, 2):
        prefix = f"block{index}_conv{unit}"
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=prefix)(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{prefix}_bn")(x)
        x = layers.ReLU(name=f"{prefix}_relu")(x)
    return layers.MaxPooling2D(2, name=f"block{index}_pool")(x)


def build_cnn(
    input_shape: tuple[int, int, int],
    num_classes: int,
    filters: Sequence[int] = (32, 64),
    dense_units: int = 128,
    dropout: float = 0.3,
    augment: bool = False,
    seed: int | None = None,
) -> keras.Model:
    """Build the CNN classifier: one conv block per `filters` entry, then a Dense head.

    With `augment=True`, small random translations and rotations (seeded by `seed`) are applied
    after rescaling; Keras only activates them during training.
    """
    height, width, channels = check_image_shape(input_shape, "input_shape")
    num_classes = check_num_classes(num_classes)
    filters = check_positive_sequence(filters, "filters")
    dense_units = check_positive_int(dense_units, "dense_units")
    dropout = check_rate(dropout, "dropout")
    downsampling = 2 ** len(filters)
    if min(height, width) // downsampling < 1:
        raise ValueError(
            f"filters={list(filters)} gives {len(filters)} 2x2 poolings (downsampling by "
            f"{downsampling}), too many for input_shape={(height, width, channels)}: use at most "
            f"{max(min(height, width).bit_length() - 1, 0)} blocks or larger images"
        )

    inputs = keras.Input(shape=(height, width, channels), name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    if augment:
        x = layers.RandomTranslation(0.1, 0.1, seed=seed, name="random_translation")(x)
        x = layers.RandomRotation(0.05, seed=seed, name="random_rotation")(x)
    for index, block_filters in enumerate(filters, start=1):
        x = _conv_block(x, block_filters, index)

    final_cells = (height // downsampling) * (width // downsampling)
    if final_cells <= FLATTEN_MAX_CELLS:
        x = layers.Flatten(name="flatten")(x)
    else:
        x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = layers.Dropout(dropout, name="features_dropout")(x)
    x = layers.Dense(dense_units, activation="relu", name=EMBEDDING_LAYER_NAME)(x)
    x = layers.Dropout(dropout, name="embedding_dropout")(x)
    outputs = layers.Dense(
        num_classes, activation="softmax", dtype="float32", name="probabilities"
    )(x)
    return keras.Model(inputs, outputs, name="cnn")


def build_reference_cnn(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """Build the bare-Keras reference CNN (plus input rescaling) used for speed benchmarks.

    Its unpadded convolutions need images of at least 18x18 (e.g. 28x28 MNIST).
    """
    height, width, channels = check_image_shape(input_shape, "input_shape")
    num_classes = check_num_classes(num_classes)
    # Spatial size after conv3 -> pool2 -> conv3 -> pool2 -> conv3 (valid padding).
    final_size = ((min(height, width) - 2) // 2 - 2) // 2 - 2
    if final_size < 1:
        raise ValueError(
            f"input_shape={(height, width, channels)} is too small for the reference CNN: "
            "height and width must be at least 18"
        )

    inputs = keras.Input(shape=(height, width, channels), name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(128, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(512, activation="relu")(x)
    outputs = layers.Dense(
        num_classes, activation="softmax", dtype="float32", name="probabilities"
    )(x)
    return keras.Model(inputs, outputs, name="reference_cnn")
