"""Figures for reports: image grids, image pairs and confusion matrices written as PNG.

Every writer goes through `tasks.atomic`, so a killed stage never leaves half a PNG behind.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tasks.atomic import atomic_path


def save_image_grid(images: np.ndarray, path: Path, columns: int = 8, scale: int = 4) -> None:
    """Tile (N, H, W, C) images with values 0..255 into one PNG, `columns` per row."""
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(
            f"save_image_grid needs a non-empty (N, H, W, C) array, got {images.shape}"
        )
    count, height, width, channels = images.shape
    rows = -(-count // columns)
    grid = np.zeros((rows * (height + 1) + 1, columns * (width + 1) + 1, channels), np.uint8)
    pixels = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    for index, image in enumerate(pixels):
        row, column = divmod(index, columns)
        top, left = 1 + row * (height + 1), 1 + column * (width + 1)
        grid[top : top + height, left : left + width] = image
    _save_png(grid, path, scale)


def save_pair_grid(
    left: np.ndarray, right: np.ndarray, path: Path, pairs_per_row: int, scale: int = 4
) -> None:
    """Tile (left[i], right[i]) pairs side by side, `pairs_per_row` per row, with a wider gap
    between pairs than within one (e.g. a generated sample and its nearest real image)."""
    if left.shape != right.shape or left.ndim != 4 or len(left) == 0:
        raise ValueError(
            f"save_pair_grid needs two non-empty (N, H, W, C) arrays of one shape, got "
            f"{left.shape} and {right.shape}"
        )
    count, height, width, channels = left.shape
    gap = max(2, width // 4)
    pair_width = 2 * width + 1 + gap
    rows = -(-count // pairs_per_row)
    shape = (rows * (height + 1) + 1, pairs_per_row * pair_width + 1, channels)
    grid = np.full(shape, 96, np.uint8)  # a mid-grey background sets the pairs apart
    for index, (first, second) in enumerate(zip(left, right, strict=True)):
        row, column = divmod(index, pairs_per_row)
        top, start = 1 + row * (height + 1), 1 + column * pair_width
        for offset, image in ((0, first), (width + 1, second)):
            pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)
            grid[top : top + height, start + offset : start + offset + width] = pixels
    _save_png(grid, path, scale)


def _save_png(grid: np.ndarray, path: Path, scale: int) -> None:
    """An (H, W, C) uint8 array as a PNG, enlarged `scale` times (nearest neighbour)."""
    picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    picture = picture.resize(
        (picture.width * scale, picture.height * scale), Image.Resampling.NEAREST
    )
    with atomic_path(path) as temporary:
        picture.save(temporary, format="PNG")


def save_confusion_matrix(
    matrix: np.ndarray, class_names: list[str], path: Path, title: str
) -> None:
    """Annotated confusion-matrix heat map (rows: true class, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.5 * len(class_names) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(class_names)), class_names)
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, column), value in np.ndenumerate(matrix):
        color = "white" if value > threshold else "black"
        axes.text(column, row, str(value), ha="center", va="center", color=color, fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, format="png")
    plt.close(figure)
