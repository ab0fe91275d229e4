"""Tests for models.rnn: shapes, argument checks and training behaviour."""

import keras
import numpy as np
import pytest

from models import build_reference_rnn, build_rnn


def infer(model: keras.Model, inputs) -> np.ndarray:
    """Run the model in inference mode eagerly (faster than predict() for tiny batches)."""
    return keras.ops.convert_to_numpy(model(inputs, training=False))


def random_images(count: int, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Raw uint8 images with pixel values 0..255."""
    return np.random.default_rng(seed).integers(0, 256, size=(count, *shape), dtype=np.uint8)


@pytest.mark.parametrize(
    ("shape", "num_classes", "bidirectional"),
    [((8, 8, 1), 10, False), ((28, 28, 1), 10, False), ((6, 5, 3), 3, True)],
)
def test_rnn_outputs_probabilities(shape, num_classes, bidirectional):
    model = build_rnn(shape, num_classes, lstm_units=(8, 8), bidirectional=bidirectional)
    probabilities = infer(model, random_images(5, shape))
    assert model.name == "rnn"
    assert probabilities.shape == (5, num_classes)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_rnn_reads_one_image_row_per_time_step():
    model = build_rnn((6, 5, 3), 3, lstm_units=(4,))
    assert tuple(model.get_layer("rows").output.shape) == (None, 6, 15)


def test_reference_rnn_output_shape():
    model = build_reference_rnn((8, 8, 1), 10)
    lstm_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.LSTM)]
    assert [layer.units for layer in lstm_layers] == [64, 64, 64]
    assert infer(model, random_images(2, (8, 8, 1))).shape == (2, 10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 1}, "num_classes"),
        ({"lstm_units": ()}, "lstm_units"),
        ({"lstm_units": (8, -1)}, "lstm_units"),
        ({"dropout": 1.5}, "dropout"),
        ({"input_shape": (8, 8)}, "input_shape"),
    ],
)
def test_rnn_rejects_bad_arguments(kwargs, message):
    arguments = {"input_shape": (8, 8, 1), "num_classes": 10} | kwargs
    with pytest.raises(ValueError, match=message):
        build_rnn(**arguments)


def test_reference_rnn_rejects_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        build_reference_rnn((8, 8, 1), 1)


def bright_or_dark(count: int, shape: tuple[int, int, int], seed: int = 0):
    """A trivially separable dataset: class 1 images are bright, class 0 images are dark."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=count)
    low = np.where(labels == 1, 180, 0).reshape(-1, 1, 1, 1)
    images = low + rng.integers(0, 76, size=(count, *shape))
    return images.astype("float32"), labels


def test_rnn_fit_and_learn_bright_versus_dark():
    keras.utils.set_random_seed(0)
    images, labels = bright_or_dark(256, (8, 8, 1))
    model = build_rnn((8, 8, 1), 2, lstm_units=(16,), dropout=0.0)
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(images, labels, batch_size=16, epochs=4, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    test_images, test_labels = bright_or_dark(128, (8, 8, 1), seed=1)
    predictions = infer(model, test_images).argmax(axis=1)
    assert (predictions == test_labels).mean() >= 0.95


def test_rnn_saves_and_loads_without_custom_objects(tmp_path):
    model = build_rnn((8, 8, 1), 10, lstm_units=(4, 4), bidirectional=True)
    path = tmp_path / "rnn.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    images = random_images(3, (8, 8, 1))
    np.testing.assert_allclose(infer(loaded, images), infer(model, images), rtol=1e-6)


def test_unrolled_rnn_is_the_same_model():
    """`unroll` changes how the time loop runs, not the model: same weights, same outputs."""
    looped = build_rnn((8, 8, 1), 10, lstm_units=(6, 5), bidirectional=True)
    unrolled = build_rnn((8, 8, 1), 10, lstm_units=(6, 5), bidirectional=True, unroll=True)
    unrolled.set_weights(looped.get_weights())
    images = np.random.default_rng(0).integers(0, 256, size=(4, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(unrolled(images), looped(images), rtol=1e-5, atol=1e-6)
    assert all(layer.unroll for layer in _lstm_layers(unrolled))
    reference = build_reference_rnn((8, 8, 1), 10, unroll=True)
    assert len(_lstm_layers(reference)) == 3 and all(
        lstm.unroll for lstm in _lstm_layers(reference)
    )


def _lstm_layers(model: keras.Model) -> list:
    found = []
    for layer in model.layers:
        inner = getattr(layer, "forward_layer", None)
        found += [inner] if inner is not None else []
        found += [layer] if isinstance(layer, keras.layers.LSTM) else []
    return found


# Issue 15: the sizes and channel counts a declared image policy can give.
POLICY_SHAPES = [(8, 8, 1), (28, 28, 3), (20, 32, 1), (96, 96, 3)]


@pytest.mark.parametrize("shape", POLICY_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_builds_and_trains_one_step_for_each_policy_shape(shape: tuple[int, int, int]) -> None:
    model = build_rnn(shape, 3, lstm_units=(4,), bidirectional=True)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    history = model.fit(random_images(4, shape), np.array([0, 1, 2, 0]), batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert infer(model, random_images(2, shape)).shape == (2, 3)
