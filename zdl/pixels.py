"""Pixels as the loader stores them (uint8 codes) and as the book uses them (codes / 255, float32).

`normalize_pixels` is the one definition of the book's normalization. `pack_pixels` inverts it where it
can do so exactly, so that a batch can travel as one byte per pixel instead of four or eight and come
back with the very same bits (the training service sends each step's batch this way).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

#: The book's normalization divides pixel codes 0..255 by this.
PIXEL_SCALE = 255.0


def normalize_pixels(codes: NDArray[np.uint8], dtype: Any = np.float32) -> NDArray[np.floating[Any]]:
    """codes / 255 in `dtype` (float32 in the book): the division is done in `dtype`, element by element."""
    x = codes.astype(dtype)
    x /= PIXEL_SCALE
    return x


def pack_pixels(x: NDArray[Any]) -> NDArray[np.uint8] | None:
    """uint8 codes with `normalize_pixels(codes, x.dtype)` bit for bit equal to x, or None if there are none.

    Checked by comparing bits, so -0.0, NaN or any value that is not some code / 255 gives None.
    """
    if x.dtype not in (np.float32, np.float64):
        return None
    scaled = np.rint(x * PIXEL_SCALE)
    if scaled.size and not (scaled.min() >= 0 and scaled.max() <= 255):  # also False for NaN
        return None
    codes = scaled.astype(np.uint8)
    back = normalize_pixels(codes, x.dtype)
    unsigned = f"u{x.dtype.itemsize}"
    if not np.array_equal(back.view(unsigned), np.ascontiguousarray(x).view(unsigned)):
        return None
    return codes
