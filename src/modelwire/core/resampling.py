"""Resizing a stack of small grayscale pictures with numpy, as Pillow's filters weigh
pixels.

Pillow resizes one image per call, and for pictures of a few hundred pixels the call,
the image object and the copies to and from numpy cost far more than the arithmetic.
Here a resize is two small matrix products with weights computed once per size: the
same filter, support and normalisation as Pillow's `Image.resize` (its
`precompute_coeffs`), in floating point. Pillow keeps 22-bit fixed-point weights, so a
pixel can differ from its result by one grey level; tests hold it to that.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

__all__ = ["FILTERS", "resize_stack", "weights"]


def _box(x: float) -> float:
    return 1.0 if -0.5 < x <= 0.5 else 0.0


def _bilinear(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


#: model.toml's `resample` names → (filter, support), as Pillow defines them. Only the
#: filters without negative lobes: with those, Pillow's 8-bit clipping between its two
#: passes changes results by more than a grey level, and Pillow does the resize instead.
FILTERS: dict[str, tuple[Callable[[float], float], float]] = {
    "box": (_box, 0.5),
    "bilinear": (_bilinear, 1.0),
}


@functools.lru_cache(maxsize=512)
def weights(in_size: int, out_size: int, resample: str) -> np.ndarray:
    """The [out_size, in_size] matrix that resizes one axis: each output pixel's weights
    over the input pixels, summing to 1."""
    kernel, support = FILTERS[resample]
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support *= filter_scale
    matrix = np.zeros((out_size, in_size), dtype=np.float32)
    for out in range(out_size):
        center = (out + 0.5) * scale
        first = max(int(center - support + 0.5), 0)
        last = min(int(center + support + 0.5), in_size)
        row = [kernel((x - center + 0.5) / filter_scale) for x in range(first, last)]
        total = sum(row)
        matrix[out, first:last] = [w / total for w in row] if total else row
    matrix.setflags(write=False)
    return matrix


def resize_stack(stack: np.ndarray, width: int, height: int, resample: str) -> np.ndarray:
    """[N, H, W] whole grey levels (0..255) → [N, height, width], rounded to whole
    levels as 8-bit pictures are."""
    _, rows, cols = stack.shape
    out = np.asarray(stack, dtype=np.float32)
    if cols != width:  # rows first, each pass rounded to 8 bits, as Pillow does
        out = _levels(out @ weights(cols, width, resample).T)
    if rows != height:
        out = _levels(weights(rows, height, resample) @ out)
    return out


def _levels(values: np.ndarray) -> np.ndarray:
    rounded: np.ndarray = np.clip(np.floor(values + 0.5), 0.0, 255.0)
    return rounded
