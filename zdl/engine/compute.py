"""One switch for the three gradient methods, per block and for the whole network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from zdl.engine.backprop import backprop_gradient
from zdl.engine.blocks import Block, assemble, param_shapes, partition
from zdl.engine.budget import Check, no_check
from zdl.engine.incremental import incremental_blocks_gradient
from zdl.engine.inputs import Params, check_batch, check_params, check_threads
from zdl.engine.kernel import resolve_kernel
from zdl.engine.reference import reference_block_gradient

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
    *,
    threads: int = 1,
    check: Check | None = None,
    kernel: str | None = None,
) -> list[NDArray[np.float64]]:
    """Gradient entries of each block, a pure function of its arguments (what a worker computes).

    params: W1 (I, H), b1 (H,), W2 (H, O), b2 (O,), float. x: (N, I). t: labels (N,) or one-hot (N, O).
    Returns one float64 array of shape (block.size,) per block. Blocks computed together share work
    (one forward pass, shared (sample, value) pairs) but give the same bits as blocks computed alone.

    threads: cores `numerical` may use in this call (compiled kernel; the bits do not depend on it).
    check: called between chunks of work (at most about 0.1 s of one core apart); an exception it raises
    aborts the call. kernel: "numba", "numpy" or "auto" for `numerical` (default: $ZDL_KERNEL, see
    `zdl.engine.kernel`). Extra memory stays under `zdl.engine.budget.MEMORY_BUDGET` at admitted shapes.
    """
    checked_blocks = [b if isinstance(b, Block) else Block.from_dict(b) for b in blocks]
    method = check_method(method)
    threads = check_threads(threads)
    check = check or no_check
    checked = check_params(params)
    shapes = param_shapes(checked)
    for block in checked_blocks:
        block.check(shapes)
    x_arr, labels = check_batch(checked, x, t)
    if method == "numerical":
        if resolve_kernel(kernel) == "numba":
            from zdl.engine.compiled import compiled_blocks_gradient

            return compiled_blocks_gradient(checked_blocks, checked, x_arr, labels, threads, check)
        return incremental_blocks_gradient(checked_blocks, checked, x_arr, labels, check=check)
    if method == "numerical-reference":
        return [reference_block_gradient(b, checked, x_arr, labels, check) for b in checked_blocks]
    full = backprop_gradient(checked, x_arr, labels, check)
    return [full[b.param].reshape(-1)[b.start : b.stop].copy() for b in checked_blocks]


def block_gradient(
    block: Block | Mapping[str, Any],
    params: Mapping[str, ArrayLike],
    x: ArrayLike,
    t: ArrayLike,
    method: str = "numerical",
    **options: Any,
) -> NDArray[np.float64]:
    """Gradient entries `block.start:block.stop` of `block.param` (options: see `blocks_gradient`)."""
    return blocks_gradient([block], params, x, t, method, **options)[0]


def gradient(
    params: Mapping[str, ArrayLike],
    x: ArrayLike,
    t: ArrayLike,
    method: str = "numerical",
    *,
    n_blocks: int = 1,
    threads: int = 1,
    check: Check | None = None,
    kernel: str | None = None,
) -> Params:
    """The whole gradient {W1, b1, W2, b2} in this process, as `partition(n_blocks)` blocks in one call.

    The result does not depend on n_blocks or threads (bit for bit); n_blocks exists to show and test that.
    """
    method = check_method(method)
    checked = check_params(params)
    x_arr, labels = check_batch(checked, x, t)
    if method == "backprop":
        return backprop_gradient(checked, x_arr, labels, check or no_check)
    shapes = param_shapes(checked)
    blocks = partition(shapes, n_blocks=n_blocks)
    values = blocks_gradient(blocks, checked, x_arr, labels, method, threads=threads, check=check, kernel=kernel)
    return assemble(shapes, list(zip(blocks, values, strict=True)))
