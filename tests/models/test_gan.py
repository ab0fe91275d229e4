"""Tests for models.gan: builders, non-saturating losses, ConditionalGAN training and sampling."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models import (
    ConditionalGAN,
    build_discriminator,
    build_generator,
    discriminator_loss,
    generator_loss,
    pixels_to_tanh,
    tanh_to_pixels,
)

LATENT_DIM = 8
NUM_CLASSES = 10
IMAGE_SHAPE = (8, 8, 1)


def infer(model: keras.Model, inputs) -> np.ndarray:
    """Run the model in inference mode eagerly (faster than predict() for tiny batches)."""
    return keras.ops.convert_to_numpy(model(inputs, training=False))


def small_gan(seed: int | None = 0) -> ConditionalGAN:
    generator = build_generator(LATENT_DIM, NUM_CLASSES, IMAGE_SHAPE, base_filters=8)
    discriminator = build_discriminator(IMAGE_SHAPE, NUM_CLASSES, base_filters=8)
    return ConditionalGAN(generator, discriminator, LATENT_DIM, NUM_CLASSES, seed=seed)


def noise_and_labels(count: int, latent_dim: int = LATENT_DIM, seed: int = 0):
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((count, latent_dim)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, size=(count, 1)).astype("int32")
    return noise, labels


@pytest.mark.parametrize("image_shape", [(8, 8, 1), (28, 28, 1), (12, 16, 3)])
def test_generator_outputs_images_in_tanh_range(image_shape):
    generator = build_generator(LATENT_DIM, NUM_CLASSES, image_shape, base_filters=8)
    images = infer(generator, list(noise_and_labels(6)))
    assert generator.name == "generator"
    assert images.shape == (6, *image_shape)
    assert images.dtype == np.float32
    assert images.min() >= -1.0
    assert images.max() <= 1.0


def test_discriminator_outputs_a_logit_and_class_logits_per_image():
    discriminator = build_discriminator((28, 28, 1), NUM_CLASSES, base_filters=8)
    images = np.random.default_rng(0).uniform(-1, 1, size=(5, 28, 28, 1)).astype("float32")
    labels = np.arange(5).reshape(-1, 1)
    logits, class_logits = (
        keras.ops.convert_to_numpy(output)
        for output in discriminator([images, labels], training=False)
    )
    assert discriminator.name == "discriminator"
    assert logits.shape == (5, 1)
    assert logits.dtype == np.float32
    assert class_logits.shape == (5, NUM_CLASSES)
    assert class_logits.dtype == np.float32


def test_discriminator_class_head_does_not_see_the_label():
    # The auxiliary classifier must judge the image alone, or it could copy the label input.
    discriminator = build_discriminator(IMAGE_SHAPE, NUM_CLASSES, base_filters=4)
    images = np.random.default_rng(0).uniform(-1, 1, size=(3, *IMAGE_SHAPE)).astype("float32")
    first = discriminator([images, np.zeros((3, 1), "int32")], training=False)
    second = discriminator([images, np.full((3, 1), 7, "int32")], training=False)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(first[1]), keras.ops.convert_to_numpy(second[1])
    )
    assert not np.allclose(
        keras.ops.convert_to_numpy(first[0]), keras.ops.convert_to_numpy(second[0])
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_shape": (0, 8, 1)}, r"image_shape must be \(height, width, channels\)"),
        ({"image_shape": (8, 6)}, "image_shape"),  # any size works (issue 15), but not 2 dims
        ({"num_classes": 1}, "num_classes"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"base_filters": 0}, "base_filters"),
    ],
)
def test_generator_rejects_bad_arguments(kwargs, message):
    arguments = {
        "latent_dim": LATENT_DIM,
        "num_classes": NUM_CLASSES,
        "image_shape": IMAGE_SHAPE,
    } | kwargs
    with pytest.raises(ValueError, match=message):
        build_generator(**arguments)


def test_discriminator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="image_shape"):
        build_discriminator((8, 8), NUM_CLASSES)
    with pytest.raises(ValueError, match="num_classes"):
        build_discriminator(IMAGE_SHAPE, 1)


def test_conditional_gan_rejects_mismatched_latent_dim():
    generator = build_generator(LATENT_DIM, NUM_CLASSES, IMAGE_SHAPE, base_filters=4)
    discriminator = build_discriminator(IMAGE_SHAPE, NUM_CLASSES, base_filters=4)
    with pytest.raises(ValueError, match="latent_dim"):
        ConditionalGAN(generator, discriminator, LATENT_DIM + 1, NUM_CLASSES)
    with pytest.raises(ValueError, match="label_smoothing"):
        ConditionalGAN(generator, discriminator, LATENT_DIM, NUM_CLASSES, label_smoothing=0.5)
    with pytest.raises(ValueError, match="class_loss_weight"):
        ConditionalGAN(generator, discriminator, LATENT_DIM, NUM_CLASSES, class_loss_weight=-1)


def test_losses_match_hand_computed_values():
    log2 = np.log(2.0)
    zeros = tf.zeros((4, 1))
    np.testing.assert_allclose(float(generator_loss(zeros)), log2, rtol=1e-6)
    np.testing.assert_allclose(float(discriminator_loss(zeros, zeros)), 2 * log2, rtol=1e-6)
    # A discriminator that calls everything real: the generator is satisfied, the
    # discriminator pays about `logit` for misclassifying the fakes.
    confident = tf.fill((4, 1), 20.0)
    assert float(generator_loss(confident)) < 1e-6
    np.testing.assert_allclose(float(discriminator_loss(confident, confident)), 20.0, rtol=1e-6)
    # One-sided label smoothing: BCE(0.9, 10) + BCE(0, -10).
    expected = -(0.9 * np.log(1 / (1 + np.exp(-10.0))) + 0.1 * np.log(1 / (1 + np.exp(10.0))))
    expected += np.log1p(np.exp(-10.0))
    smoothed = discriminator_loss(tf.fill((2, 1), 10.0), tf.fill((2, 1), -10.0), real_label=0.9)
    np.testing.assert_allclose(float(smoothed), expected, rtol=1e-5)


def test_generator_loss_is_non_saturating():
    # When the discriminator confidently rejects the fakes, -log D(G(z)) still has a unit
    # gradient; the saturating log(1 - D(G(z))) would have a vanishing one.
    logits = tf.Variable(tf.fill((1, 1), -20.0))
    with tf.GradientTape() as tape:
        loss = generator_loss(logits)
    np.testing.assert_allclose(float(tape.gradient(loss, logits)[0, 0]), -1.0, rtol=1e-4)


def test_conditional_gan_fit_reports_finite_losses():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(64, *IMAGE_SHAPE), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, size=64)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
    gan = small_gan()
    gan.compile(
        generator_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
        discriminator_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
    )
    generator_before = [weight.copy() for weight in gan.generator.get_weights()]
    history = gan.fit(dataset, epochs=1, shuffle=False, verbose=0)
    assert set(history.history) == {"d_loss", "g_loss"}
    assert np.isfinite(history.history["d_loss"][0])
    assert np.isfinite(history.history["g_loss"][0])
    generator_after = gan.generator.get_weights()
    assert any(
        not np.allclose(before, after)
        for before, after in zip(generator_before, generator_after, strict=True)
    )


def test_class_spread_is_the_within_class_standard_deviation_of_the_batch():
    from models.gan import ClassSpread

    spread = ClassSpread(NUM_CLASSES)
    # Class 0: features 0 and 2 (deviations -1, +1); class 3: 5 and 5. Two class means leave
    # 4 - 2 = 2 degrees of freedom: variance (1 + 1) / 2 = 1 in feature 0; feature 1 is constant.
    features = np.array([[0.0, 7.0], [2.0, 7.0], [5.0, 7.0], [5.0, 7.0]], "float32")
    labels = np.array([[0], [0], [3], [3]], "int32")
    values = keras.ops.convert_to_numpy(spread([features, labels]))
    np.testing.assert_allclose(values, np.full((4, 1), (1.0 + 1e-4) / 2), rtol=1e-4)
    # One drawing per class: no spread at all, however different the classes are.
    collapsed = np.array([[0.0, 1.0], [0.0, 1.0], [9.0, -4.0], [9.0, -4.0]], "float32")
    assert keras.ops.convert_to_numpy(spread([collapsed, labels])).max() < 1e-3
    assert ClassSpread.from_config(spread.get_config()).num_classes == NUM_CLASSES


def test_discriminator_realness_tells_a_collapsed_batch_from_a_varied_one():
    discriminator = build_discriminator(IMAGE_SHAPE, NUM_CLASSES, base_filters=4)
    spread_output = keras.Model(
        discriminator.inputs, discriminator.get_layer("class_spread").output
    )
    rng = np.random.default_rng(0)
    labels = np.array([[0], [0], [1], [1]], "int32")
    varied = rng.uniform(-1, 1, size=(4, *IMAGE_SHAPE)).astype("float32")
    collapsed = varied[[0, 0, 2, 2]]
    assert infer(spread_output, [varied, labels]).min() > 0.01
    assert infer(spread_output, [collapsed, labels]).max() < 1e-3
    logits = [
        keras.ops.convert_to_numpy(discriminator([batch, labels], training=False)[0])
        for batch in (varied, collapsed)
    ]
    assert not np.allclose(logits[0][[0, 2]], logits[1][[0, 2]])  # same images, other batches


def test_diff_augment_shifts_and_cuts_out_differentiably():
    from models.gan import diff_augment

    ones = tf.ones((6, 8, 8, 1))
    seed = keras.random.SeedGenerator(0)
    with tf.GradientTape() as tape:
        tape.watch(ones)
        augmented = diff_augment(ones, seed, max_shift=3)
        total = tf.reduce_sum(augmented)
    values = keras.ops.convert_to_numpy(augmented)
    assert values.shape == (6, 8, 8, 1)
    assert set(np.unique(values)) <= {-1.0, 0.0, 1.0}  # background, cut-out, the image
    assert (values == 0).any(axis=(1, 2, 3)).all()  # every image has its cut-out square
    assert (values == -1).any()  # some image was shifted, letting the background in
    gradient = keras.ops.convert_to_numpy(tape.gradient(total, ones))
    assert np.isfinite(gradient).all() and gradient.sum() > 0  # the generator gets a signal
    again = diff_augment(ones, keras.random.SeedGenerator(0), max_shift=3)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(again), values)  # seeded


def test_saved_generator_is_the_moving_average_of_the_trained_one():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(16, *IMAGE_SHAPE), dtype=np.uint8)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(16) % 10)).batch(16)
    for decay in (0.0, 0.75):
        keras.utils.set_random_seed(0)
        gan = ConditionalGAN(
            build_generator(LATENT_DIM, NUM_CLASSES, IMAGE_SHAPE, base_filters=4),
            build_discriminator(IMAGE_SHAPE, NUM_CLASSES, base_filters=4),
            LATENT_DIM,
            NUM_CLASSES,
            seed=0,
            ema_decay=decay,
        )
        gan.compile(keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-2))
        before = gan.generator.get_weights()
        for start, online in zip(before, gan.online_generator.get_weights(), strict=True):
            np.testing.assert_array_equal(start, online)  # both start from the built weights
        gan.fit(dataset, epochs=1, verbose=0)  # one step
        trained = gan.online_generator.get_weights()
        assert any(not np.allclose(start, end) for start, end in zip(before, trained, strict=True))
        for start, end, average in zip(before, trained, gan.generator.get_weights(), strict=True):
            np.testing.assert_allclose(average, decay * start + (1 - decay) * end, atol=1e-6)
    with pytest.raises(ValueError, match="ema_decay"):
        ConditionalGAN(gan.generator, gan.discriminator, LATENT_DIM, NUM_CLASSES, ema_decay=1.0)


def test_conditional_gan_under_mixed_precision_scales_losses_and_keeps_float32_outputs():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        gan = small_gan()
        gan.compile(keras.optimizers.Adam(2e-4), keras.optimizers.Adam(2e-4))
        assert isinstance(gan.generator_optimizer, keras.optimizers.LossScaleOptimizer)
        assert isinstance(gan.discriminator_optimizer, keras.optimizers.LossScaleOptimizer)
        assert gan.generator.get_layer("upsample1").compute_dtype == "float16"
        assert gan.generator.output.dtype == "float32"
        assert [output.dtype for output in gan.discriminator.outputs] == ["float32"] * 2
        # One training step under the policy (CPU computes float16 too, only slower).
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, size=(16, *IMAGE_SHAPE), dtype=np.uint8)
        dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(16) % 10)).batch(16)
        history = gan.fit(dataset, epochs=1, verbose=0).history
        assert np.isfinite(history["d_loss"][0]) and np.isfinite(history["g_loss"][0])
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_generate_returns_pixel_values_and_is_reproducible():
    gan = small_gan(seed=3)
    images = gan.generate([0, 1, 2, 9])
    assert images.shape == (4, *IMAGE_SHAPE)
    assert images.min() >= 0.0
    assert images.max() <= 255.0
    same_seed = ConditionalGAN(gan.generator, gan.discriminator, LATENT_DIM, NUM_CLASSES, seed=3)
    np.testing.assert_allclose(same_seed.generate([0, 1, 2, 9]), images, rtol=1e-6)
    noise, _ = noise_and_labels(2)
    raw = infer(gan.generator, [noise, np.array([[4], [5]], "int32")])
    np.testing.assert_allclose(gan.generate([4, 5], noise=noise), tanh_to_pixels(raw), rtol=1e-6)


def test_pixel_and_tanh_mappings_are_exact_inverses_on_the_pixel_range():
    np.testing.assert_array_equal(
        tanh_to_pixels(np.array([-1.0, 0.0, 1.0, 1.5, -2.0])), [0.0, 127.5, 255.0, 255.0, 0.0]
    )
    pixels = np.arange(256, dtype="float32")
    np.testing.assert_array_equal(pixels_to_tanh(np.array([0.0, 127.5, 255.0])), [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(tanh_to_pixels(pixels_to_tanh(pixels)), pixels, atol=1e-4)
    assert tanh_to_pixels(np.zeros(3)).dtype == np.float32


@pytest.mark.parametrize(
    ("labels", "noise_rows", "message"),
    [([0, NUM_CLASSES], None, "labels"), ([-1], None, "labels"), ([0, 1], 3, "noise")],
)
def test_generate_rejects_bad_arguments(labels, noise_rows, message):
    gan = small_gan()
    noise = None if noise_rows is None else noise_and_labels(noise_rows)[0]
    with pytest.raises(ValueError, match=message):
        gan.generate(labels, noise=noise)


def test_generator_saves_and_loads_without_custom_objects(tmp_path):
    generator = build_generator(LATENT_DIM, NUM_CLASSES, IMAGE_SHAPE, base_filters=8)
    path = tmp_path / "generator.keras"
    generator.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    inputs = list(noise_and_labels(4))
    np.testing.assert_allclose(infer(loaded, inputs), infer(generator, inputs), rtol=1e-6)


# Issue 15: the sizes and channel counts a declared image policy can give (20x32 and 30x30 are
# not multiples of the generator's 4x upsampling; 96x96 gets a third upsampling step).
POLICY_SHAPES = [(8, 8, 1), (28, 28, 3), (20, 32, 1), (30, 30, 1), (96, 96, 3)]


@pytest.mark.parametrize("shape", POLICY_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_builds_and_trains_one_step_for_each_policy_shape(shape: tuple[int, int, int]) -> None:
    generator = build_generator(LATENT_DIM, 3, shape, base_filters=4)
    discriminator = build_discriminator(shape, 3, base_filters=4)
    gan = ConditionalGAN(generator, discriminator, LATENT_DIM, 3, seed=0)
    gan.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
    images = np.random.default_rng(0).integers(0, 256, size=(4, *shape)).astype("uint8")
    history = gan.fit(images, np.array([0, 1, 2, 0]), batch_size=4, verbose=0)
    assert np.isfinite(history.history["d_loss"][0]) and np.isfinite(history.history["g_loss"][0])
    assert gan.generate(np.array([0, 2])).shape == (2, *shape)


def test_mnist_sized_gan_keeps_its_architecture() -> None:
    """28x28 keeps two upsampling steps from a 7x7 map (MNIST quality was measured on it)."""
    generator = build_generator(LATENT_DIM, NUM_CLASSES, (28, 28, 1), base_filters=8)
    assert generator.get_layer("to_feature_map").output.shape[1:] == (7, 7, 16)
    assert [layer.name for layer in generator.layers if layer.name.startswith("upsample")][-1] == (
        "upsample2_relu"
    )
    with pytest.raises(ValueError, match="No such layer"):
        generator.get_layer("crop_to_size")
