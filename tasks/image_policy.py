"""The declared image policy: how `prepare` turns a file of any size and colour mode into the
pixels of the dataset's one shape.

The names follow Keras' `image_dataset_from_directory`, which users already know: `image_size`
([height, width]), `color_mode` (grayscale, rgb, rgba), `crop_to_aspect_ratio` or
`pad_to_aspect_ratio` (neither: stretch) and `interpolation`. Every file is first turned upright
by its EXIF orientation; 16-bit, palette, alpha, CMYK and other modes are converted to the declared
colour mode. The files themselves are never changed: the policy applies to the decoded pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from tasks.params import PrepareParams

CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
PIL_MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}
RESAMPLING = {
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "bicubic": Image.Resampling.BICUBIC,
    "area": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
}
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"})
WIDE_MODES = frozenset({"I", "F", "I;16", "I;16B", "I;16L", "I;16N"})  # more than 8 bits
ORIENTATION_TAG = 0x0112
TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Pillow's resize first reduces by an integer factor while the image is this many times larger
# than the target: several times faster on large photos, visually the same.
REDUCING_GAP = 3.0
# A resized image is "blank" when its pixel standard deviation (0..255 units) is below this
# while its source's was not: the content vanished in the resize (e.g. thin strokes).
BLANK_STD = 2.0


@dataclass(frozen=True)
class ImagePolicy:
    """What prepare does to every image; the default keeps each image's own size."""

    image_size: tuple[int, int] | None = None  # (height, width)
    color_mode: str | None = None  # grayscale | rgb | rgba; None: grey stays grey, else rgb
    crop_to_aspect_ratio: bool = False
    pad_to_aspect_ratio: bool = False
    interpolation: str = "bilinear"

    @classmethod
    def from_params(cls, params: PrepareParams) -> ImagePolicy:
        size = params.image_size
        return cls(
            image_size=None if size is None else (int(size[0]), int(size[1])),
            color_mode=params.color_mode,
            crop_to_aspect_ratio=params.crop_to_aspect_ratio,
            pad_to_aspect_ratio=params.pad_to_aspect_ratio,
            interpolation=params.interpolation,
        )

    def as_dict(self) -> dict[str, object]:
        """The policy as meta.json records it."""
        return {
            "image_size": None if self.image_size is None else list(self.image_size),
            "color_mode": self.color_mode,
            "crop_to_aspect_ratio": self.crop_to_aspect_ratio,
            "pad_to_aspect_ratio": self.pad_to_aspect_ratio,
            "interpolation": self.interpolation,
        }

    def target_shape(self, source_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """The dataset's (height, width, channels): the policy's, else `source_shape`'s."""
        height, width, channels = (int(v) for v in source_shape)
        if self.image_size is not None:
            height, width = self.image_size
        if self.color_mode is not None:
            channels = CHANNELS[self.color_mode]
        return height, width, channels


@dataclass(frozen=True)
class Pixels:
    """One image after the policy, and what it was before."""

    array: np.ndarray  # uint8 (H, W, C)
    source_size: tuple[int, int]  # (height, width) of the upright file
    upscale: float  # linear enlargement applied (1.0: none or shrunk)
    blank_after_resize: bool


def orientation(image: Image.Image) -> int:
    """The EXIF orientation (1..8; 1 upright). PNG reads its eXIf chunk after the pixels."""
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except (OSError, SyntaxError, ValueError):  # a malformed EXIF block: treat as upright
        return 1
    return int(value) if isinstance(value, int) and value in range(1, 9) else 1


def apply_policy(image: Image.Image, policy: ImagePolicy) -> Pixels:
    """Decode an opened file under the policy: upright, colour mode, aspect rule, size."""
    turn = orientation(image)
    width, height = image.size
    if turn in (5, 6, 7, 8):
        width, height = height, width
    if policy.image_size is not None and image.format == "JPEG":
        _draft(image, (height, width), policy, turn)
    image.load()
    if turn in TRANSPOSES:
        image = image.transpose(TRANSPOSES[turn])
    image = convert_mode(image, policy.color_mode)
    if policy.image_size is None or image.size == policy.image_size[::-1]:
        return Pixels(_array(image), (height, width), 1.0, False)
    resized = resize(image, policy)
    array = _array(resized)
    scale = _scale((height, width), policy)
    blank = bool(array.std() < BLANK_STD and _array(image).std() >= BLANK_STD)
    return Pixels(array, (height, width), round(max(scale, 1.0), 4), blank)


def _array(image: Image.Image) -> np.ndarray:
    array = np.asarray(image, dtype=np.uint8)
    return array[..., np.newaxis] if array.ndim == 2 else array


def convert_mode(image: Image.Image, color_mode: str | None) -> Image.Image:
    """Convert to L, RGB or RGBA: the declared mode, or (None) L for grey files, RGB for others.

    16-bit and float grey is scaled to 8 bits (not clipped); a palette becomes RGBA when it has
    transparency; alpha is dropped for grayscale and rgb, as Keras does.
    """
    if image.mode in WIDE_MODES:
        image = Image.fromarray(_eight_bit(np.asarray(image)), "L")
    elif image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if color_mode is None:
        target = "L" if image.mode in GREY_MODES else "RGB"
    else:
        target = PIL_MODES[color_mode]
    return image if image.mode == target else image.convert(target)


def _eight_bit(values: np.ndarray) -> np.ndarray:
    """Wide grey values to uint8: 16-bit integers / 257, floats in [0, 1] x 255 (else clipped)."""
    if np.issubdtype(values.dtype, np.floating):
        top = 1.0 if float(np.nanmax(values, initial=0.0)) <= 1.0 else 255.0
        return np.clip(np.nan_to_num(values) * (255.0 / top), 0, 255).round().astype(np.uint8)
    return np.clip(np.rint(values.astype(np.float32) / 257.0), 0, 255).astype(np.uint8)


def _scale(source: tuple[int, int], policy: ImagePolicy) -> float:
    """The linear scale applied to the source: the larger of the two for stretch and crop (the
    image must cover the target), the smaller for pad (it must fit inside)."""
    assert policy.image_size is not None
    ratios = (policy.image_size[0] / source[0], policy.image_size[1] / source[1])
    return min(ratios) if policy.pad_to_aspect_ratio else max(ratios)


def _draft(image: Image.Image, source: tuple[int, int], policy: ImagePolicy, turn: int) -> None:
    """Let the JPEG decoder shrink by 1/2, 1/4 or 1/8 while still covering the target size."""
    scale = _scale(source, policy)
    if scale >= 0.5:
        return
    needed = (math.ceil(source[1] * scale), math.ceil(source[0] * scale))  # (width, height)
    if turn in (5, 6, 7, 8):
        needed = needed[::-1]
    image.draft(None, needed)


def resize(image: Image.Image, policy: ImagePolicy) -> Image.Image:
    """Resize to the policy's size: stretch, centre-crop to its aspect ratio, or pad (black)."""
    assert policy.image_size is not None
    height, width = policy.image_size
    method = RESAMPLING[policy.interpolation]
    source_width, source_height = image.size
    if policy.pad_to_aspect_ratio:
        scale = min(width / source_width, height / source_height)
        inner = (
            min(width, max(1, round(source_width * scale))),
            min(height, max(1, round(source_height * scale))),
        )
        canvas = Image.new(image.mode, (width, height))
        shrunk = image.resize(inner, method, reducing_gap=REDUCING_GAP)
        canvas.paste(shrunk, ((width - inner[0]) // 2, (height - inner[1]) // 2))
        return canvas
    box = None
    if policy.crop_to_aspect_ratio:
        keep_width = min(source_width, source_height * width / height)
        keep_height = min(source_height, source_width * height / width)
        left = (source_width - keep_width) / 2
        top = (source_height - keep_height) / 2
        box = (left, top, left + keep_width, top + keep_height)
    return image.resize((width, height), method, box=box, reducing_gap=REDUCING_GAP)
