"""Class-conditional DCGAN: generator, discriminator and the adversarial training model.

Conventions:
- The generator maps (noise, label) to images in [-1, 1] (tanh output).
- The discriminator maps (image in [-1, 1], label) to a real/fake logit (projection
  discriminator) and class logits (auxiliary classifier, AC-GAN).
- `ConditionalGAN.fit` takes a dataset of (raw 0..255 images, integer labels) and scales the
  images to [-1, 1] itself; `ConditionalGAN.generate` returns images back in 0..255.
- Training uses the non-saturating GAN loss (Goodfellow et al. 2014, section 3): the
  discriminator minimises BCE(1, D(real)) + BCE(0, D(fake)) and the generator minimises
  BCE(1, D(fake)) = -log D(G(z)) instead of log(1 - D(G(z))), which saturates early in training.

Against mode collapse (one drawing per class, issue 13), measured on MNIST-10k in
benchmarks/quality_mnist.py:
- The auxiliary-classifier terms are down-weighted (train.gan.class_loss_weight 0.1): at full
  weight they pull every sample towards the easiest-to-classify drawing of its class (a known
  AC-GAN weakness); the projection discriminator does the conditioning.
- The discriminator's realness score also sees `ClassSpread`, how much the samples of each class
  in the batch differ (minibatch standard deviation within classes), so a generator that repeats
  one drawing per class is easy to call fake. Real and generated images therefore go through the
  discriminator as separate batches.
- DiffAugment (Zhao et al. 2020): the discriminator sees real and generated images alike
  shifted by up to 3 pixels and with a cut-out square, differentiably, so it cannot memorise
  the few thousand training images and the generator is not pushed onto a few of them.
- `generator` is an exponential moving average of the weights being trained
  (`online_generator`), which averages out the oscillation of adversarial training
  (Yazici et al. 2019); it is the network that is saved, sampled and scored.
"""

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from models._checks import (
    check_image_shape,
    check_num_classes,
    check_positive_int,
    check_rate,
)

AUGMENT_SHIFT = 3  # DiffAugment translation in pixels (1/8 of MNIST's 28, as in the paper)
EMA_DECAY = 0.995  # per optimiser step: the average spans ~200 steps (MNIST-10k: 1.6 epochs)
PIXEL_HALF_RANGE = 127.5  # 0..255 pixels <-> [-1, 1]: x / 127.5 - 1 and (t + 1) * 127.5

_binary_crossentropy = keras.losses.BinaryCrossentropy(from_logits=True)
_class_crossentropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def pixels_to_tanh(images: Any) -> Any:
    """Map float pixel values 0..255 to the generator's [-1, 1] range (arrays or tensors)."""
    return images / PIXEL_HALF_RANGE - 1.0


def tanh_to_pixels(images: Any) -> np.ndarray:
    """Map generator outputs in [-1, 1] to float32 pixel values, clipped to 0..255."""
    pixels = (np.asarray(images, dtype="float32") + 1.0) * PIXEL_HALF_RANGE
    return np.clip(pixels, 0.0, 255.0)


def discriminator_loss(real_logits: Any, fake_logits: Any, real_label: float = 1.0) -> Any:
    """Return BCE(real_label, D(real)) + BCE(0, D(fake)) on logits, averaged over the batch.

    A `real_label` below 1 (e.g. 0.9) is one-sided label smoothing: only the real targets are
    softened, the fake targets stay at 0 (Salimans et al. 2016).
    """
    real_loss = _binary_crossentropy(ops.full_like(real_logits, real_label), real_logits)
    fake_loss = _binary_crossentropy(ops.zeros_like(fake_logits), fake_logits)
    return real_loss + fake_loss


def generator_loss(fake_logits: Any) -> Any:
    """Return the non-saturating generator loss BCE(1, D(fake)) = mean(-log sigmoid(logits))."""
    return _binary_crossentropy(ops.ones_like(fake_logits), fake_logits)


@keras.saving.register_keras_serializable(package="imgflow")
class ClassSpread(layers.Layer):
    """How much the batch's samples of one class differ: one scalar, repeated for each sample.

    Each feature's standard deviation around its class mean within the batch, averaged over the
    features: ProGAN's minibatch standard deviation (Karras et al. 2018), taken within classes so
    that the differences between classes cannot hide a generator that draws one image per class.
    Inputs: [features (batch, n), labels (batch, 1) int]; output (batch, 1).
    """

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes = check_num_classes(num_classes)

    def call(self, inputs: Any) -> Any:
        features, labels = inputs
        flat = ops.cast(features, "float32")  # float16 would underflow the variances
        onehot = ops.one_hot(ops.reshape(labels, (-1,)), self.num_classes, dtype="float32")
        counts = ops.sum(onehot, axis=0)
        means = ops.matmul(ops.transpose(onehot), flat) / ops.maximum(counts, 1.0)[:, None]
        residual = flat - ops.matmul(onehot, means)
        # Degrees of freedom: one per sample, less one per class mean (at least 1).
        classes_present = ops.sum(ops.cast(counts > 0, "float32"))
        freedom = ops.maximum(ops.cast(ops.shape(flat)[0], "float32") - classes_present, 1.0)
        variance = ops.sum(ops.square(residual), axis=0) / freedom
        spread = ops.mean(ops.sqrt(variance + 1e-8))
        return ops.cast(ops.ones_like(flat[:, :1]) * spread, features.dtype)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, int]:
        return (input_shape[0][0], 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_classes": self.num_classes}


def scale_steps(height: int, width: int) -> int:
    """How many 2x up- (generator) and down-sampling (discriminator) steps an image size gets:
    2 up to 55 pixels on the short side (28x28 MNIST: 7x7 -> 28x28), then one more per doubling,
    at most 4, so the first feature map stays about 7 cells or more on its short side."""
    return max(2, min(4, int(math.log2(max(min(height, width), 1) / 7))))


def build_generator(
    latent_dim: int,
    num_classes: int,
    image_shape: tuple[int, int, int],
    base_filters: int = 64,
) -> keras.Model:
    """Build the generator: inputs [noise (latent_dim,), label (1,) int], output tanh images.

    The label embedding is concatenated with the noise, projected to a map of 1/2**n of the
    image size (n = `scale_steps`, rounded up) and upsampled n times by strided transposed
    convolutions; a size not divisible by 2**n is centre-cropped to the image size at the end.
    """
    latent_dim = check_positive_int(latent_dim, "latent_dim")
    num_classes = check_num_classes(num_classes)
    height, width, channels = check_image_shape(image_shape, "image_shape")
    base_filters = check_positive_int(base_filters, "base_filters")
    steps = scale_steps(height, width)
    start = (math.ceil(height / 2**steps), math.ceil(width / 2**steps))

    noise = keras.Input(shape=(latent_dim,), name="noise")
    label = keras.Input(shape=(1,), dtype="int32", name="label")
    label_embedding = layers.Embedding(num_classes, latent_dim, name="label_embedding")(label)
    label_embedding = layers.Flatten(name="label_flatten")(label_embedding)
    x = layers.Concatenate(name="noise_and_label")([noise, label_embedding])

    top_filters = base_filters * 2 ** (steps - 1)
    x = layers.Dense(start[0] * start[1] * top_filters, use_bias=False, name="project")(x)
    x = layers.BatchNormalization(momentum=0.9, name="project_bn")(x)
    x = layers.LeakyReLU(0.2, name="project_relu")(x)
    x = layers.Reshape((*start, top_filters), name="to_feature_map")(x)
    for index in range(1, steps + 1):
        x = layers.Conv2DTranspose(
            base_filters * 2 ** (steps - index),
            4,
            strides=2,
            padding="same",
            use_bias=False,
            name=f"upsample{index}",
        )(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"upsample{index}_bn")(x)
        x = layers.LeakyReLU(0.2, name=f"upsample{index}_relu")(x)
    extra = (start[0] * 2**steps - height, start[1] * 2**steps - width)
    if any(extra):
        crop = (
            (extra[0] // 2, extra[0] - extra[0] // 2),
            (extra[1] // 2, extra[1] - extra[1] // 2),
        )
        x = layers.Cropping2D(crop, name="crop_to_size")(x)
    outputs = layers.Conv2D(
        channels, 3, padding="same", activation="tanh", dtype="float32", name="image"
    )(x)
    return keras.Model([noise, label], outputs, name="generator")


def build_discriminator(
    image_shape: tuple[int, int, int],
    num_classes: int,
    base_filters: int = 64,
) -> keras.Model:
    """Build the discriminator: inputs [image in [-1, 1], label (1,) int], outputs
    [real/fake logit (1,), class logits (num_classes,)].

    A strided-conv trunk reads the image alone. The real/fake logit is a projection
    discriminator (Miyato & Koyama 2018): a linear score of the features and of their
    within-class spread over the batch (`ClassSpread`), plus the inner product of the features
    with an embedding of the label. The class logits are an auxiliary classifier (AC-GAN, Odena
    et al. 2017) that never sees the label, so it can teach the generator to draw the requested
    class. Feed real and generated images as separate batches: the spread is a batch statistic.
    """
    height, width, channels = check_image_shape(image_shape, "image_shape")
    num_classes = check_num_classes(num_classes)
    base_filters = check_positive_int(base_filters, "base_filters")

    image = keras.Input(shape=(height, width, channels), name="image")
    label = keras.Input(shape=(1,), dtype="int32", name="label")
    x = image
    filters = [base_filters * 2**index for index in range(scale_steps(height, width))]
    for index, block_filters in enumerate(filters, start=1):
        x = layers.Conv2D(block_filters, 4, strides=2, padding="same", name=f"downsample{index}")(x)
        x = layers.LeakyReLU(0.2, name=f"downsample{index}_relu")(x)
        x = layers.Dropout(0.3, name=f"downsample{index}_dropout")(x)
    features = layers.Flatten(name="flatten")(x)
    feature_size = features.shape[-1]
    label_embedding = layers.Embedding(num_classes, feature_size, name="label_embedding")(label)
    label_embedding = layers.Flatten(name="label_flatten")(label_embedding)
    projection = layers.Dot(axes=1, name="label_projection")([features, label_embedding])
    spread = ClassSpread(num_classes, name="class_spread")([features, label])
    realness_input = layers.Concatenate(name="features_and_spread")([features, spread])
    unconditional = layers.Dense(1, name="realness")(realness_input)
    logit = layers.Add(name="logit", dtype="float32")([unconditional, projection])
    class_logits = layers.Dense(num_classes, dtype="float32", name="class_logits")(features)
    return keras.Model([image, label], [logit, class_logits], name="discriminator")


def diff_augment(images: Any, seed: Any, max_shift: int = AUGMENT_SHIFT) -> Any:
    """Differentiable augmentation of a batch in [-1, 1] (DiffAugment, Zhao et al. 2020): each
    image shifted by up to `max_shift` pixels (background -1 fills in) and a square of half its
    height and width, at a random centre, set to 0. `seed` is a keras.random.SeedGenerator."""
    shape = ops.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    span = 2 * max_shift + 1
    padded = ops.pad(
        images, [[0, 0], [max_shift, max_shift], [max_shift, max_shift], [0, 0]], constant_values=-1
    )
    dy = ops.cast(keras.random.randint((batch,), 0, span, seed=seed), "float32")
    dx = ops.cast(keras.random.randint((batch,), 0, span, seed=seed), "float32")
    full_h = ops.cast(height + 2 * max_shift - 1, "float32")
    full_w = ops.cast(width + 2 * max_shift - 1, "float32")
    size_h, size_w = ops.cast(height - 1, "float32"), ops.cast(width - 1, "float32")
    boxes = ops.stack([dy / full_h, dx / full_w, (dy + size_h) / full_h, (dx + size_w) / full_w], 1)
    shifted = tf.image.crop_and_resize(
        padded, boxes, tf.range(batch), [height, width], method="nearest"
    )
    centre_y = keras.random.randint((batch, 1, 1), 0, height, seed=seed)
    centre_x = keras.random.randint((batch, 1, 1), 0, width, seed=seed)
    rows = ops.reshape(ops.arange(height), (1, -1, 1))
    columns = ops.reshape(ops.arange(width), (1, 1, -1))
    inside = (ops.abs(rows - centre_y) < height // 4) & (ops.abs(columns - centre_x) < width // 4)
    return shifted * (1.0 - ops.cast(inside, shifted.dtype)[..., None])


class ConditionalGAN(keras.Model):
    """Adversarial trainer for a conditional generator/discriminator pair.

    Train with `fit(dataset)` where the dataset yields (raw 0..255 images, integer labels);
    `fit` reports the mean `d_loss` and `g_loss` of each epoch. `seed` makes the noise
    reproducible; `label_smoothing` > 0 trains the discriminator towards 1 - label_smoothing
    on real images (one-sided label smoothing), 0 gives the plain non-saturating loss.
    `class_loss_weight` scales the auxiliary-classifier terms: the discriminator learns the class
    of real images, the generator is pushed to make its samples classified as the requested class.
    `generator` holds the exponential moving average (decay `ema_decay` per step) of the weights
    of `online_generator`, the copy the optimizer trains; `generator` is what is saved and sampled.
    """

    def __init__(
        self,
        generator: keras.Model,
        discriminator: keras.Model,
        latent_dim: int,
        num_classes: int,
        seed: int | None = None,
        label_smoothing: float = 0.0,
        class_loss_weight: float = 1.0,
        ema_decay: float = EMA_DECAY,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        self.num_classes = check_num_classes(num_classes)
        self.label_smoothing = check_rate(label_smoothing, "label_smoothing", upper=0.5)
        self.class_loss_weight = check_rate(class_loss_weight, "class_loss_weight", upper=100.0)
        generator_latent_dim = generator.inputs[0].shape[-1]
        if generator_latent_dim != self.latent_dim:
            raise ValueError(
                f"latent_dim={self.latent_dim} does not match the generator's noise input "
                f"size {generator_latent_dim}"
            )
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {ema_decay}")
        self.ema_decay = float(ema_decay)
        self.generator = generator
        # The trained copy starts from the same weights; `generator` follows it by averaging.
        self.online_generator = keras.models.clone_model(generator)
        self.online_generator.set_weights(generator.get_weights())
        self.discriminator = discriminator
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        # Both networks are built Functional models, so every weight of the GAN exists now;
        # marking it built lets weight checkpoints (BackupAndRestore) save and restore it.
        self.built = True

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        """The loss trackers, listed so Keras resets them at the start of every epoch."""
        return [self.d_loss_tracker, self.g_loss_tracker]

    def compile(
        self,
        generator_optimizer: keras.optimizers.Optimizer,
        discriminator_optimizer: keras.optimizers.Optimizer,
        **kwargs: Any,
    ) -> None:
        """Set one optimizer per network; extra keyword arguments go to `keras.Model.compile`.

        Under the `mixed_float16` policy both optimizers are wrapped in a LossScaleOptimizer.
        """
        super().compile(**kwargs)
        if self.dtype_policy.name == "mixed_float16":
            generator_optimizer = _loss_scaled(generator_optimizer)
            discriminator_optimizer = _loss_scaled(discriminator_optimizer)
        self.generator_optimizer = generator_optimizer
        self.discriminator_optimizer = discriminator_optimizer

    def call(self, inputs: Any, training: bool = False) -> Any:
        """Generate images in [-1, 1] from [noise, label]."""
        return self.generator(inputs, training=training)

    def _sample_noise(self, batch_size: Any) -> Any:
        return keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)

    def train_step(self, data: Any) -> dict[str, Any]:
        """One simultaneous discriminator and generator update on a batch of (images, labels),
        then one step of the generator's moving average.

        One forward pass serves both updates (as in the TensorFlow DCGAN tutorial): the fakes
        are generated once; the discriminator sees the real and the fake batch separately, as
        its within-class spread feature is a statistic of the batch it sees.
        """
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        if labels is None:
            raise ValueError("ConditionalGAN.fit needs a dataset of (images, labels) pairs")
        real_images = pixels_to_tanh(ops.cast(images, "float32"))
        labels = ops.reshape(ops.cast(labels, "int32"), (-1, 1))
        batch_size = ops.shape(real_images)[0]
        noise = self._sample_noise(batch_size)

        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake_images = self.online_generator([noise, labels], training=True)
            real_seen = diff_augment(real_images, self.seed_generator)
            fake_seen = diff_augment(ops.cast(fake_images, real_images.dtype), self.seed_generator)
            real_logits, real_class = self.discriminator([real_seen, labels], training=True)
            fake_logits, fake_class = self.discriminator([fake_seen, labels], training=True)
            targets = ops.reshape(labels, (-1,))
            d_loss = discriminator_loss(real_logits, fake_logits, 1.0 - self.label_smoothing)
            d_loss += self.class_loss_weight * _class_crossentropy(targets, real_class)
            g_loss = generator_loss(fake_logits)
            g_loss += self.class_loss_weight * _class_crossentropy(targets, fake_class)
            scaled_d_loss = self.discriminator_optimizer.scale_loss(d_loss)
            scaled_g_loss = self.generator_optimizer.scale_loss(g_loss)
        d_weights = self.discriminator.trainable_weights
        g_weights = self.online_generator.trainable_weights
        d_gradients = d_tape.gradient(scaled_d_loss, d_weights)
        g_gradients = g_tape.gradient(scaled_g_loss, g_weights)
        self.discriminator_optimizer.apply_gradients(zip(d_gradients, d_weights, strict=True))
        self.generator_optimizer.apply_gradients(zip(g_gradients, g_weights, strict=True))
        self._update_average()

        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        return {metric.name: metric.result() for metric in self.metrics}

    def _update_average(self) -> None:
        """generator <- decay * generator + (1 - decay) * online_generator, every weight
        (batch-norm statistics too, so the average network normalises like the trained one)."""
        decay = self.ema_decay
        for average, online in zip(
            self.generator.weights, self.online_generator.weights, strict=True
        ):
            average.assign(decay * average + (1.0 - decay) * ops.cast(online, average.dtype))

    def generate(self, labels: Any, noise: Any = None, batch_size: int = 256) -> np.ndarray:
        """Generate one image per label; returns float32 pixel values in [0, 255].

        `noise` defaults to fresh standard-normal samples from the model's seed generator.
        """
        labels = np.asarray(labels).reshape(-1, 1)
        if labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be a non-empty array of integers, got {labels.dtype}")
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(
                f"labels must lie in [0, {self.num_classes}), got {labels.min()}..{labels.max()}"
            )
        if noise is None:
            noise = ops.convert_to_numpy(self._sample_noise(len(labels)))
        noise = np.asarray(noise, dtype="float32")
        if noise.shape != (len(labels), self.latent_dim):
            raise ValueError(
                f"noise must have shape {(len(labels), self.latent_dim)}, got {noise.shape}"
            )
        images = self.generator.predict(
            [noise, labels.astype("int32")], batch_size=batch_size, verbose=0
        )
        return tanh_to_pixels(images)


def _loss_scaled(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer
    return keras.optimizers.LossScaleOptimizer(optimizer)
