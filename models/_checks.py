"""Argument checks shared by the model builders; each raises ValueError naming the argument."""

from collections.abc import Sequence
from numbers import Integral, Real
from typing import TypeGuard


def _is_int(value: object) -> TypeGuard[Integral]:
    """An integer of any kind (Python or NumPy), but not a bool."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def check_positive_int(value: object, name: str) -> int:
    """Return `value` as an int, or raise ValueError when it is not a positive integer."""
    if not _is_int(value) or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_num_classes(num_classes: object) -> int:
    """Return `num_classes` as an int, or raise ValueError when it is below 2."""
    if not _is_int(num_classes) or int(num_classes) < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    return int(num_classes)


def check_image_shape(shape: object, name: str) -> tuple[int, int, int]:
    """Return `shape` as a (height, width, channels) tuple of positive ints, or raise."""
    if (
        isinstance(shape, str)
        or not isinstance(shape, Sequence)
        or len(shape) != 3
        or not all(_is_int(size) and int(size) >= 1 for size in shape)
    ):
        raise ValueError(
            f"{name} must be (height, width, channels) with positive integers, got {shape!r}"
        )
    height, width, channels = (int(size) for size in shape)
    return height, width, channels


def check_positive_sequence(values: object, name: str) -> tuple[int, ...]:
    """Return `values` as a non-empty tuple of positive ints, or raise ValueError."""
    if isinstance(values, str) or not isinstance(values, Sequence) or len(values) == 0:
        raise ValueError(
            f"{name} must be a non-empty sequence of positive integers, got {values!r}"
        )
    if not all(_is_int(value) and int(value) >= 1 for value in values):
        raise ValueError(f"{name} must hold only positive integers, got {list(values)!r}")
    return tuple(int(value) for value in values)


def check_rate(value: object, name: str, upper: float = 1.0) -> float:
    """Return `value` as a float in [0, upper), or raise ValueError."""
    if not isinstance(value, Real) or isinstance(value, bool) or not 0.0 <= float(value) < upper:
        raise ValueError(f"{name} must be a number in [0, {upper}), got {value!r}")
    return float(value)
