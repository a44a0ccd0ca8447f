"""`numerical-reference`: the book's procedure, one full loss evaluation per perturbed entry.

Kept for teaching and as the oracle that the fast method is tested against. The loss is the book's
`TwoLayerNet.loss` (predict, softmax, cross-entropy with +1e-7), without re-validating the inputs on
each of the ~80,000 calls per iteration. Large batches are evaluated in chunks of samples (bounded
memory); the per-sample terms are summed at the end exactly as the unchunked loss sums them.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from zdl.engine import budget
from zdl.engine.blocks import Block
from zdl.engine.budget import Check
from zdl.engine.inputs import Params
from zdl.engine.threads import single_threaded_blas
from zdl.functions import DELTA, sigmoid, softmax
from zdl.gradient import H


def book_loss(params: Params, x: NDArray[np.float64], labels: NDArray[np.intp]) -> float:
    """The book's TwoLayerNet.loss for validated inputs."""
    hidden = params["W1"].shape[1]
    step = budget.samples_per_chunk(32 * max(hidden, params["W2"].shape[1]), budget.NUMPY_CHUNK_BYTES)
    log_y_t = np.empty(len(labels))
    for lo in range(0, len(labels), step):
        z1 = sigmoid(np.dot(x[lo : lo + step], params["W1"]) + params["b1"])
        y = softmax(np.dot(z1, params["W2"]) + params["b2"])
        log_y_t[lo : lo + step] = np.log(y[np.arange(len(y)), labels[lo : lo + step]] + DELTA)
    return float(-np.sum(log_y_t) / len(labels))


def reference_block_gradient(
    block: Block, params: Params, x: NDArray[np.float64], labels: NDArray[np.intp], check: Check = budget.no_check
) -> NDArray[np.float64]:
    """Central differences (L(w+h) - L(w-h)) / 2h for the block's entries, each from two full forward passes.

    `check()` is called before each entry.
    """
    own = {key: value.copy() for key, value in params.items()}  # the caller's arrays are never touched
    flat = own[block.param].reshape(-1)
    grad = np.empty(block.size)
    with single_threaded_blas():
        for k, idx in enumerate(range(block.start, block.stop)):
            check()
            original = flat[idx]
            flat[idx] = original + H
            loss_plus = book_loss(own, x, labels)
            flat[idx] = original - H
            loss_minus = book_loss(own, x, labels)
            flat[idx] = original
            grad[k] = (loss_plus - loss_minus) / (2 * H)
    return grad
