"""Tests for models.cnn: shapes, argument checks, training behaviour, mixed precision, saving."""

import keras
import numpy as np
import pytest

from models import EMBEDDING_LAYER_NAME, build_cnn, build_reference_cnn


def infer(model: keras.Model, inputs) -> np.ndarray:
    """Run the model in inference mode eagerly (faster than predict() for tiny batches)."""
    return keras.ops.convert_to_numpy(model(inputs, training=False))


def random_images(count: int, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Raw uint8 images with pixel values 0..255."""
    return np.random.default_rng(seed).integers(0, 256, size=(count, *shape), dtype=np.uint8)


def bright_or_dark(count: int, shape: tuple[int, int, int], seed: int = 0):
    """A trivially separable dataset: class 1 images are bright, class 0 images are dark."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=count)
    low = np.where(labels == 1, 180, 0).reshape(-1, 1, 1, 1)
    images = low + rng.integers(0, 76, size=(count, *shape))
    return images.astype("float32"), labels


@pytest.mark.parametrize(
    ("shape", "num_classes"), [((8, 8, 1), 10), ((28, 28, 1), 10), ((16, 12, 3), 4)]
)
def test_cnn_outputs_probabilities(shape, num_classes):
    model = build_cnn(shape, num_classes, filters=(8, 16), dense_units=16)
    probabilities = infer(model, random_images(5, shape))
    assert model.name == "cnn"
    assert probabilities.shape == (5, num_classes)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_cnn_uses_flatten_on_small_maps_and_global_pooling_on_large_maps():
    small = build_cnn((28, 28, 1), 10, filters=(4, 4), dense_units=8)
    large = build_cnn((64, 64, 3), 10, filters=(4, 4), dense_units=8)
    assert "flatten" in [layer.name for layer in small.layers]
    assert "global_pool" in [layer.name for layer in large.layers]


def test_cnn_embedding_layer_gives_a_feature_extractor():
    model = build_cnn((8, 8, 1), 10, filters=(8,), dense_units=12)
    extractor = keras.Model(model.input, model.get_layer(EMBEDDING_LAYER_NAME).output)
    assert infer(extractor, random_images(3, (8, 8, 1))).shape == (3, 12)


def test_cnn_augmentation_is_inactive_at_inference_and_active_in_training():
    augmented = build_cnn((8, 8, 1), 3, filters=(4,), dense_units=8, augment=True, seed=1)
    plain = build_cnn((8, 8, 1), 3, filters=(4,), dense_units=8)
    for layer in plain.layers:  # same weights: the two models differ only by augmentation
        augmented.get_layer(layer.name).set_weights(layer.get_weights())
    images = random_images(4, (8, 8, 1))
    layer_names = [layer.name for layer in augmented.layers]
    assert "random_translation" in layer_names and "random_rotation" in layer_names
    np.testing.assert_allclose(infer(augmented, images), infer(plain, images), rtol=1e-6)
    # In training mode the random translation does move the pixels.
    trained = keras.ops.convert_to_numpy(
        augmented.get_layer("random_translation")(images.astype("float32"), training=True)
    )
    assert not np.allclose(trained, images)


def test_reference_cnn_output_shape():
    model = build_reference_cnn((28, 28, 1), 10)
    probabilities = infer(model, random_images(2, (28, 28, 1)))
    assert probabilities.shape == (2, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_shape": (8, 8, 1), "filters": (8, 8, 8, 8)}, "filters"),
        ({"input_shape": (3, 28, 1), "filters": (8, 8)}, r"input_shape=\(3, 28, 1\)"),
        ({"num_classes": 1}, "num_classes"),
        ({"num_classes": 2.5}, "num_classes"),
        ({"filters": ()}, "filters"),
        ({"filters": (8, 0)}, "filters"),
        ({"dense_units": 0}, "dense_units"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"input_shape": (8, 8)}, "input_shape"),
        ({"input_shape": (8, 0, 1)}, "input_shape"),
    ],
)
def test_cnn_rejects_bad_arguments(kwargs, message):
    arguments = {"input_shape": (8, 8, 1), "num_classes": 10} | kwargs
    with pytest.raises(ValueError, match=message):
        build_cnn(**arguments)


def test_reference_cnn_rejects_images_too_small_for_its_unpadded_convolutions():
    with pytest.raises(ValueError, match="input_shape"):
        build_reference_cnn((8, 8, 1), 10)
    with pytest.raises(ValueError, match="num_classes"):
        build_reference_cnn((28, 28, 1), 0)


def test_cnn_fit_one_epoch_on_random_data():
    keras.utils.set_random_seed(0)
    model = build_cnn((8, 8, 1), 10, filters=(8, 16), dense_units=16)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    labels = np.random.default_rng(0).integers(0, 10, size=64)
    history = model.fit(random_images(64, (8, 8, 1)), labels, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_cnn_learns_bright_versus_dark():
    keras.utils.set_random_seed(0)
    images, labels = bright_or_dark(256, (8, 8, 1))
    model = build_cnn((8, 8, 1), 2, filters=(8,), dense_units=16, dropout=0.1)
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(images, labels, batch_size=16, epochs=4, verbose=0)
    test_images, test_labels = bright_or_dark(128, (8, 8, 1), seed=1)
    predictions = infer(model, test_images).argmax(axis=1)
    assert (predictions == test_labels).mean() >= 0.95


@pytest.fixture
def mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.usefixtures("mixed_precision")
def test_cnn_trains_under_mixed_precision_with_float32_outputs():
    model = build_cnn((8, 8, 1), 10, filters=(8,), dense_units=8, augment=True)
    assert model.get_layer("block1_conv1").compute_dtype == "float16"
    assert model.output.dtype == "float32"
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    labels = np.arange(16) % 10
    history = model.fit(random_images(16, (8, 8, 1)), labels, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert infer(model, random_images(2, (8, 8, 1))).dtype == np.float32


def test_cnn_saves_and_loads_without_custom_objects(tmp_path):
    model = build_cnn((8, 8, 1), 10, filters=(8,), dense_units=8, augment=True)
    path = tmp_path / "cnn.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    images = random_images(4, (8, 8, 1))
    np.testing.assert_allclose(infer(loaded, images), infer(model, images), rtol=1e-6)


# Issue 15: the sizes and channel counts a declared image policy can give.
POLICY_SHAPES = [(8, 8, 1), (28, 28, 3), (20, 32, 1), (96, 96, 3)]


@pytest.mark.parametrize("shape", POLICY_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_builds_and_trains_one_step_for_each_policy_shape(shape: tuple[int, int, int]) -> None:
    model = build_cnn(shape, 3, filters=(4, 8), dense_units=8, augment=True, seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    history = model.fit(random_images(4, shape), np.array([0, 1, 2, 0]), batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert infer(model, random_images(2, shape)).shape == (2, 3)
