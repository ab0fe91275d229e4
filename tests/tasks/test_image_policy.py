"""The image policy: EXIF orientation, colour modes (16-bit, palette, alpha, CMYK), and the
stretch / crop / pad rules, on real encoded files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tasks.image_policy import ImagePolicy, apply_policy
from tasks.params import PrepareParams


def encoded(image: Image.Image, fmt: str = "PNG", **save: object) -> Image.Image:
    """The image written to bytes and opened again, as prepare opens a file."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    buffer.seek(0)
    return Image.open(buffer)


def test_exif_orientation_turns_the_image_upright() -> None:
    # A 2-row x 3-column image whose EXIF says "rotate 90 degrees clockwise to view" (6).
    pixels = np.zeros((20, 30), np.uint8)
    pixels[:, :10] = 255  # left third white
    exif = Image.Exif()
    exif[0x0112] = 6
    opened = encoded(Image.fromarray(pixels), "JPEG", exif=exif, quality=95)
    result = apply_policy(opened, ImagePolicy())
    assert result.array.shape == (30, 20, 1) and result.source_size == (30, 20)
    assert result.array[:10].mean() > 200 and result.array[20:].mean() < 50  # white on top


@pytest.mark.parametrize(
    ("image", "color_mode", "expected_shape", "expected_pixel"),
    [
        (Image.fromarray(np.full((4, 4), 65535, np.uint16)), None, (4, 4, 1), [255]),
        (Image.fromarray(np.full((4, 4), 32896, np.uint16)), "rgb", (4, 4, 3), [128, 128, 128]),
        (Image.new("RGBA", (4, 4), (10, 20, 30, 0)), None, (4, 4, 3), [10, 20, 30]),
        (Image.new("RGBA", (4, 4), (10, 20, 30, 40)), "rgba", (4, 4, 4), [10, 20, 30, 40]),
        (Image.new("LA", (4, 4), (90, 10)), None, (4, 4, 1), [90]),
        (Image.new("RGB", (4, 4), (255, 0, 0)).convert("P"), None, (4, 4, 3), [255, 0, 0]),
        (Image.new("L", (4, 4), 70), "rgb", (4, 4, 3), [70, 70, 70]),
        (Image.new("RGB", (4, 4), (0, 0, 255)), "grayscale", (4, 4, 1), [29]),
    ],
    ids=[
        "16-bit",
        "16-bit to rgb",
        "alpha dropped",
        "rgba kept",
        "grey alpha",
        "palette",
        "grey to rgb",
        "rgb to grey",
    ],
)
def test_modes_convert_to_the_declared_colour_mode(
    image: Image.Image, color_mode: str | None, expected_shape: tuple, expected_pixel: list
) -> None:
    result = apply_policy(encoded(image), ImagePolicy(color_mode=color_mode))
    assert result.array.shape == expected_shape and result.array.dtype == np.uint8
    assert result.array[0, 0].tolist() == expected_pixel


def test_cmyk_jpeg_becomes_rgb() -> None:
    opened = encoded(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95)
    assert opened.mode == "CMYK"
    result = apply_policy(opened, ImagePolicy())
    red, green, blue = result.array[4, 4].tolist()
    assert result.array.shape == (8, 8, 3) and red > 200 and green < 60 and blue < 60


def test_stretch_crop_and_pad_to_the_declared_size() -> None:
    pixels = np.zeros((10, 40), np.uint8)
    pixels[:, 15:25] = 255  # a white band in the middle of a wide image
    wide = Image.fromarray(pixels)
    stretch = apply_policy(encoded(wide), ImagePolicy(image_size=(10, 10)))
    crop = apply_policy(encoded(wide), ImagePolicy(image_size=(10, 10), crop_to_aspect_ratio=True))
    pad = apply_policy(encoded(wide), ImagePolicy(image_size=(10, 10), pad_to_aspect_ratio=True))
    for result in (stretch, crop, pad):
        assert result.array.shape == (10, 10, 1) and result.source_size == (10, 40)
        assert result.upscale == 1.0  # shrunk, never enlarged
    assert 0.2 < stretch.array.mean() / 255 < 0.35  # the band is a quarter of the width
    assert crop.array.mean() / 255 > 0.9  # the centre 10x10 is the band
    assert pad.array[:3].max() == 0 and pad.array[7:].max() == 0  # black bars above and below
    assert pad.array[4:6].max() > 200


def test_upscaling_and_blank_after_resize_are_measured() -> None:
    small = apply_policy(encoded(Image.new("L", (5, 4), 80)), ImagePolicy(image_size=(32, 32)))
    assert small.upscale == 8.0 and not small.blank_after_resize  # constant before: not "lost"
    line = np.zeros((400, 400), np.uint8)
    line[200, :] = 255  # one thin line: gone after shrinking 50x
    shrunk = apply_policy(encoded(Image.fromarray(line)), ImagePolicy(image_size=(8, 8)))
    assert shrunk.blank_after_resize and shrunk.upscale == 1.0


def test_large_jpeg_decodes_reduced_to_the_same_result() -> None:
    rng = np.random.default_rng(0)
    photo = Image.fromarray(
        np.kron(rng.integers(0, 256, (12, 16, 3)), np.ones((100, 100, 1))).astype(np.uint8)
    )
    policy = ImagePolicy(image_size=(24, 32))
    reduced = apply_policy(encoded(photo, "JPEG", quality=95), policy)
    assert reduced.source_size == (1200, 1600)
    full = apply_policy(encoded(photo, "PNG"), policy)
    assert np.abs(reduced.array.astype(int) - full.array.astype(int)).mean() < 6


def test_policy_from_params_and_target_shape() -> None:
    params = PrepareParams(
        val_fraction=0.1, test_fraction=0.1, image_size=[20, 32], color_mode="rgb"
    )
    policy = ImagePolicy.from_params(params)
    assert policy.target_shape((28, 28, 1)) == (20, 32, 3)
    assert ImagePolicy().target_shape((28, 28, 1)) == (28, 28, 1)
    assert policy.as_dict()["image_size"] == [20, 32]
