"""One switch for the three gradient methods, per block and for the whole network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from zdl.engine.blocks import Block, assemble, param_shapes, partition
from zdl.engine.incremental import base_forward, incremental_block_gradient, incremental_blocks_gradient
from zdl.engine.inputs import Params, check_batch, check_params
from zdl.engine.reference import reference_block_gradient
from zdl.engine.threads import single_threaded_blas
from zdl.nets import TwoLayerNet

#: "numerical" is the fast exact engine, "numerical-reference" the book's procedure, "backprop" the chapter 5 way.
METHODS = ("numerical", "numerical-reference", "backprop")


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"gradient method must be one of {list(METHODS)}, got {method!r}")
    return method


def blocks_gradient(
    blocks: Sequence[Block | Mapping[str, Any]],
    params: Mapping[str, ArrayLike],
    x: ArrayLike,
    t: ArrayLike,
    method: str = "numerical",
) -> list[NDArray[np.float64]]:
    """Gradient entries of each block, a pure function of its arguments (what a worker computes).

    params: W1 (I, H), b1 (H,), W2 (H, O), b2 (O,), float. x: (N, I). t: labels (N,) or one-hot (N, O).
    Returns one float64 array of shape (block.size,) per block. Blocks computed together share work
    (one forward pass, shared (sample, value) pairs) but give the same bits as blocks computed alone.
    """
    checked_blocks = [b if isinstance(b, Block) else Block.from_dict(b) for b in blocks]
    method = check_method(method)
    checked = check_params(params)
    shapes = param_shapes(checked)
    for block in checked_blocks:
        block.check(shapes)
    x_arr, labels = check_batch(checked, x, t)
    if method == "numerical":
        return incremental_blocks_gradient(checked_blocks, checked, x_arr, labels)
    if method == "numerical-reference":
        return [reference_block_gradient(b, checked, x_arr, labels) for b in checked_blocks]
    with single_threaded_blas():
        full = TwoLayerNet.from_params(checked).gradient(x_arr, labels)
    return [full[b.param].reshape(-1)[b.start : b.stop].copy() for b in checked_blocks]


def block_gradient(
    block: Block | Mapping[str, Any],
    params: Mapping[str, ArrayLike],
    x: ArrayLike,
    t: ArrayLike,
    method: str = "numerical",
) -> NDArray[np.float64]:
    """Gradient entries `block.start:block.stop` of `block.param` (see `blocks_gradient`)."""
    return blocks_gradient([block], params, x, t, method)[0]


def gradient(
    params: Mapping[str, ArrayLike],
    x: ArrayLike,
    t: ArrayLike,
    method: str = "numerical",
    *,
    n_blocks: int = 1,
) -> Params:
    """The whole gradient {W1, b1, W2, b2} in this process, computed block by block.

    The result does not depend on n_blocks (bit for bit); the parameter exists to show and test that.
    """
    method = check_method(method)
    checked = check_params(params)
    x_arr, labels = check_batch(checked, x, t)
    if method == "backprop":
        with single_threaded_blas():
            return TwoLayerNet.from_params(checked).gradient(x_arr, labels)
    shapes = param_shapes(checked)
    blocks = partition(shapes, n_blocks=n_blocks)
    if method == "numerical":
        fwd = base_forward(checked, x_arr, labels)
        values = [incremental_block_gradient(b, checked, x_arr, labels, fwd) for b in blocks]
    else:
        values = [reference_block_gradient(b, checked, x_arr, labels) for b in blocks]
    return assemble(shapes, list(zip(blocks, values, strict=True)))
