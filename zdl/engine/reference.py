"""`numerical-reference`: the book's procedure, one full loss evaluation per perturbed entry.

Kept for teaching and as the oracle that the fast method is tested against.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from zdl.engine.blocks import Block
from zdl.engine.inputs import Params
from zdl.engine.threads import single_threaded_blas
from zdl.gradient import H
from zdl.nets import TwoLayerNet


def reference_block_gradient(
    block: Block, params: Params, x: NDArray[np.float64], labels: NDArray[np.intp]
) -> NDArray[np.float64]:
    """Central differences (L(w+h) - L(w-h)) / 2h for the block's entries, each from two full forward passes."""
    net = TwoLayerNet.from_params(params)  # private copies: the caller's arrays are never touched
    flat = net.params[block.param].reshape(-1)
    grad = np.empty(block.size)
    with single_threaded_blas():
        for k, idx in enumerate(range(block.start, block.stop)):
            original = flat[idx]
            flat[idx] = original + H
            loss_plus = net.loss(x, labels)
            flat[idx] = original - H
            loss_minus = net.loss(x, labels)
            flat[idx] = original
            grad[k] = (loss_plus - loss_minus) / (2 * H)
    return grad
