"""Validation of what a block computation receives: four float parameters that fit together, a batch, labels."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from zdl.engine.blocks import PARAM_NAMES
from zdl.functions import as_labels

Params = dict[str, NDArray[np.float64]]


def check_params(params: Mapping[str, ArrayLike]) -> Params:
    """The four parameters as float64 arrays with consistent shapes, or a ValueError naming the problem."""
    missing = [name for name in PARAM_NAMES if name not in params]
    if missing:
        raise ValueError(f"parameters: missing {missing}; expected {list(PARAM_NAMES)}")
    checked: Params = {}
    for name in PARAM_NAMES:
        arr = np.asarray(params[name])
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"parameters: {name} must be a floating-point array, got dtype {arr.dtype}")
        checked[name] = np.ascontiguousarray(arr, dtype=np.float64)
    w1, w2 = checked["W1"], checked["W2"]
    if w1.ndim != 2 or w2.ndim != 2:
        raise ValueError(f"parameters: W1 and W2 must be 2-D, got shapes {w1.shape} and {w2.shape}")
    hidden, output = w1.shape[1], w2.shape[1]
    expected = {"b1": (hidden,), "W2": (hidden, output), "b2": (output,)}
    for name, shape in expected.items():
        if checked[name].shape != shape:
            raise ValueError(
                f"parameters: {name} has shape {checked[name].shape}, expected {shape} (from W1 {w1.shape})"
            )
    return checked


def check_batch(params: Params, x: ArrayLike, t: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """The batch as C-ordered float64 (N, input_size) and the targets as label indices (N,)."""
    input_size = params["W1"].shape[0]
    output_size = params["W2"].shape[1]
    x_arr = np.ascontiguousarray(x, dtype=np.float64)
    if x_arr.ndim != 2 or x_arr.shape[1] != input_size or x_arr.shape[0] == 0:
        raise ValueError(f"batch: expected shape (N>=1, {input_size}), received {x_arr.shape}")
    t_arr = np.asarray(t)
    if t_arr.ndim == 2:
        if t_arr.shape != (x_arr.shape[0], output_size):
            raise ValueError(
                f"targets: one-hot must have shape {(x_arr.shape[0], output_size)}, received {t_arr.shape}"
            )
        t_arr = t_arr.argmax(axis=1)
    return x_arr, as_labels(t_arr, output_size, x_arr.shape[0])


def check_threads(threads: int) -> int:
    """A positive thread count, or a ValueError naming the value."""
    if isinstance(threads, bool) or int(threads) != threads or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    return int(threads)
