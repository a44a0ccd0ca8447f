"""Backpropagation (chapter 5's gradient) in chunks of samples, for the engine's `backprop` method.

A batch that fits one chunk is `TwoLayerNet.gradient` itself, on one BLAS thread. A larger one (up to
10,000 samples at hidden 1024) is summed chunk by chunk in a fixed order, so its extra memory stays
bounded; the chunks depend on the shapes alone, so the bits are the same in every process.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from zdl.engine import budget
from zdl.engine.budget import Check
from zdl.engine.inputs import Params
from zdl.engine.threads import single_threaded_blas
from zdl.functions import DELTA, sigmoid, softmax
from zdl.nets import PARAM_NAMES, TwoLayerNet


def backprop_gradient(params: Params, x: NDArray[np.float64], labels: NDArray[np.intp], check: Check) -> Params:
    """dL/d{W1, b1, W2, b2} of the book's loss (its +1e-7 included) by backpropagation."""
    batch, (input_size, hidden), classes = x.shape[0], params["W1"].shape, params["W2"].shape[1]
    # about eight arrays of (chunk, max(sizes)) float64 at once
    step = budget.samples_per_chunk(64 * max(input_size, hidden, classes), budget.NUMPY_CHUNK_BYTES)
    with single_threaded_blas():
        if batch <= step:
            return TwoLayerNet.from_params(params).gradient(x, labels)
        grads = {name: np.zeros_like(params[name]) for name in PARAM_NAMES}
        for lo in range(0, batch, step):
            _add_chunk(grads, params, x[lo : lo + step], labels[lo : lo + step], batch)
            check()
    return grads


def _add_chunk(
    grads: Params, params: Params, x: NDArray[np.float64], labels: NDArray[np.intp], batch: int
) -> None:
    """The same arithmetic as `TwoLayerNet.gradient`, for some of the batch's samples, added to grads."""
    a1 = np.dot(x, params["W1"]) + params["b1"]
    z1 = sigmoid(a1)
    y = softmax(np.dot(z1, params["W2"]) + params["b2"])
    rows = np.arange(len(labels))
    y_t = y[rows, labels]
    dy = y
    dy[rows, labels] -= 1
    dy *= (y_t / (y_t + DELTA) / batch)[:, None]
    da1 = np.dot(dy, params["W2"].T)
    da1 *= z1 * (1.0 - z1)
    grads["W1"] += np.dot(x.T, da1)
    grads["b1"] += np.sum(da1, axis=0)
    grads["W2"] += np.dot(z1.T, dy)
    grads["b2"] += np.sum(dy, axis=0)
