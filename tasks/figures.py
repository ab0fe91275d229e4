"""Figures for reports: image grids and confusion matrices written as PNG (matplotlib, Agg).

Both writers go through `tasks.atomic`, so a killed stage never leaves half a PNG behind.
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
    picture = Image.fromarray(grid[..., 0] if channels == 1 else grid)
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
