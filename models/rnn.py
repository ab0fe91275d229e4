"""Recurrent image classifiers that read an image as a sequence of rows (Keras Functional API).

Inputs are raw images of shape (height, width, channels) with pixel values 0..255; each of the
`height` time steps sees one row of `width * channels` values, rescaled to [0, 1] inside the
model. The final softmax layer computes in float32 for `mixed_float16` compatibility.
"""

from collections.abc import Sequence

import keras
from keras import layers

from models._checks import (
    check_image_shape,
    check_num_classes,
    check_positive_sequence,
    check_rate,
)


def _rows_as_sequence(
    inputs: keras.KerasTensor, height: int, width: int, channels: int
) -> keras.KerasTensor:
    """Reshape (H, W, C) images to (H, W*C) row sequences and rescale them to [0, 1]."""
    x = layers.Reshape((height, width * channels), name="rows")(inputs)
    return layers.Rescaling(1.0 / 255, name="rescale")(x)


def build_rnn(
    input_shape: tuple[int, int, int],
    num_classes: int,
    lstm_units: Sequence[int] = (64, 64),
    dropout: float = 0.2,
    bidirectional: bool = False,
    unroll: bool = False,
) -> keras.Model:
    """Build the stacked-LSTM classifier: one LSTM per `lstm_units` entry, then softmax.

    `unroll` spells the time steps out as separate ops instead of a loop: the same model and
    weights, more memory, and on CPU (short sequences such as 28 rows) faster steps.
    """
    height, width, channels = check_image_shape(input_shape, "input_shape")
    num_classes = check_num_classes(num_classes)
    lstm_units = check_positive_sequence(lstm_units, "lstm_units")
    dropout = check_rate(dropout, "dropout")

    inputs = keras.Input(shape=(height, width, channels), name="image")
    x = _rows_as_sequence(inputs, height, width, channels)
    for index, units in enumerate(lstm_units, start=1):
        is_last = index == len(lstm_units)
        lstm = layers.LSTM(units, return_sequences=not is_last, unroll=unroll, name=f"lstm{index}")
        if bidirectional:
            lstm = layers.Bidirectional(lstm, name=f"bidirectional_lstm{index}")
        x = lstm(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(
        num_classes, activation="softmax", dtype="float32", name="probabilities"
    )(x)
    return keras.Model(inputs, outputs, name="rnn")


def build_reference_rnn(
    input_shape: tuple[int, int, int], num_classes: int, unroll: bool = False
) -> keras.Model:
    """Build the bare-Keras reference RNN (3 x LSTM(64), plus rescaling) for speed benchmarks;
    `unroll` as in build_rnn."""
    height, width, channels = check_image_shape(input_shape, "input_shape")
    num_classes = check_num_classes(num_classes)

    inputs = keras.Input(shape=(height, width, channels), name="image")
    x = _rows_as_sequence(inputs, height, width, channels)
    x = layers.LSTM(64, return_sequences=True, unroll=unroll)(x)
    x = layers.LSTM(64, return_sequences=True, unroll=unroll)(x)
    x = layers.LSTM(64, unroll=unroll)(x)
    outputs = layers.Dense(
        num_classes, activation="softmax", dtype="float32", name="probabilities"
    )(x)
    return keras.Model(inputs, outputs, name="reference_rnn")
