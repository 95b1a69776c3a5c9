"""Resizing a stack of small grayscale pictures with numpy, as Pillow's filters weigh
pixels.

Pillow resizes one image per call, and for pictures of a few hundred pixels the call,
the image object and the copies to and from numpy cost far more than the arithmetic.
Here a resize is two small matrix products with weights computed once per size: the
same filter, support, normalisation and 22-bit fixed-point weights as Pillow's
`Image.resize` (its `precompute_coeffs` and `normalize_coeffs_8bpc`), each pass rounded
to 8 bits as Pillow rounds it. The sums are whole numbers below 2**31, exact in float64.
For a square picture (what `crop_to_content` makes) the result is Pillow's, pixel for
pixel; for other shapes Pillow sometimes lands one grey level off, in a way its source
does not explain, and tests hold the difference to that one level.
"""

from __future__ import annotations

import functools
import math
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


#: Pillow's fixed-point weights: 32 bits, less 8 for the pixel and 2 for overflow.
_PRECISION = 1 << 22
_HALF = 1 << 21


@functools.lru_cache(maxsize=512)
def weights(in_size: int, out_size: int, resample: str) -> np.ndarray:
    """The [out_size, in_size] matrix that resizes one axis: each output pixel's weights
    over the input pixels, in Pillow's fixed point (they sum to about 2**22)."""
    kernel, support = FILTERS[resample]
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    inverse = 1.0 / filter_scale  # multiplied, not divided, as Pillow does: the box's
    support *= filter_scale  # edges fall on exact halves, where the last bit counts
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for out in range(out_size):
        center = (out + 0.5) * scale
        first = max(int(center - support + 0.5), 0)
        last = min(int(center + support + 0.5), in_size)
        row = [kernel((x - center + 0.5) * inverse) for x in range(first, last)]
        total = sum(row)
        if total:
            row = [w / total for w in row]
        matrix[out, first:last] = [math.trunc(w * _PRECISION + 0.5) for w in row]
    matrix.setflags(write=False)
    return matrix


def resize_stack(stack: np.ndarray, width: int, height: int, resample: str) -> np.ndarray:
    """[N, H, W] whole grey levels (0..255) → [N, height, width], float32: the width
    first, then the height, each pass rounded to 8 bits, as Pillow does."""
    _, rows, cols = stack.shape
    out = np.asarray(stack, dtype=np.float64)
    if cols != width:
        out = _levels(out @ weights(cols, width, resample).T)
    if rows != height:
        out = _levels(weights(rows, height, resample) @ out)
    return out.astype(np.float32)


def _levels(sums: np.ndarray) -> np.ndarray:
    """Fixed-point sums → whole grey levels, as Pillow's clip8 makes them."""
    levels: np.ndarray = np.clip(np.floor((sums + _HALF) / _PRECISION), 0.0, 255.0)
    return levels
