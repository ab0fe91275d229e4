"""Keras model builders: CNN and RNN image classifiers and a class-conditional DCGAN.

All builders take raw 0..255 images and receive their hyperparameters as arguments.
"""

from models.cnn import EMBEDDING_LAYER_NAME, build_cnn, build_reference_cnn
from models.gan import (
    ConditionalGAN,
    build_discriminator,
    build_generator,
    discriminator_loss,
    generator_loss,
    pixels_to_tanh,
    tanh_to_pixels,
)
from models.rnn import build_reference_rnn, build_rnn

__all__ = [
    "EMBEDDING_LAYER_NAME",
    "ConditionalGAN",
    "build_cnn",
    "build_discriminator",
    "build_generator",
    "build_reference_cnn",
    "build_reference_rnn",
    "build_rnn",
    "discriminator_loss",
    "generator_loss",
    "pixels_to_tanh",
    "tanh_to_pixels",
]
