"""One switch for the three gradient methods, per block and for the whole network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from zdl.engine.backprop import backprop_gradient
from zdl.engine.blocks import PARAM_NAMES, Block, assemble, param_shapes, partition
from zdl.engine.budget import Check, no_check
from zdl.engine.incremental import incremental_group_gradient
from zdl.engine.inputs import Params, check_batch, check_params, check_threads
from zdl.engine.kernel import COMPILED, resolve_kernel
from zdl.engine.pieces import GroupLayout
from zdl.engine.reference import reference_block_gradient

#: "numerical" is the fast exact engine, "numerical-reference" the book's procedure, "backprop" the chapter 5 way.
METHODS = ("numerical", "numerical-reference", "backprop")


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"gradient method must be one of {list(METHODS)}, got {method!r}")
    return method


class BlockGroup:
    """Blocks that a worker computes together step after step, checked and planned once for the parameters'
    shapes. `gradient()` gives their values end to end (what a worker sends): the same bits as
    `blocks_gradient`, without checking and planning again, each step, the hundreds of one-row blocks
    that a group of `block_groups` holds."""

    def __init__(self, blocks: Sequence[Block | Mapping[str, Any]], shapes: Mapping[str, tuple[int, ...]]) -> None:
        self.blocks = tuple(b if isinstance(b, Block) else Block.from_dict(b) for b in blocks)
        self.shapes = {name: tuple(shapes[name]) for name in PARAM_NAMES}
        for block in self.blocks:
            block.check(self.shapes)
        input_size, hidden = self.shapes["W1"]
        self.layout = GroupLayout.of(self.blocks, input_size, hidden)

    @property
    def size(self) -> int:
        """How many values `gradient()` returns."""
        return self.layout.size

    def gradient(
        self,
        params: Mapping[str, ArrayLike],
        x: ArrayLike,
        t: ArrayLike,
        method: str = "numerical",
        *,
        threads: int = 1,
        check: Check | None = None,
        kernel: str | None = None,
    ) -> NDArray[np.float64]:
        """The blocks' gradient entries end to end, float64 (options: see `blocks_gradient`)."""
        method = check_method(method)
        threads = check_threads(threads)
        check = check or no_check
        checked = check_params(params)
        if param_shapes(checked) != self.shapes:
            raise ValueError(f"block group: planned for parameter shapes {self.shapes}, got {param_shapes(checked)}")
        x_arr, labels = check_batch(checked, x, t)
        if method == "numerical":
            chosen = resolve_kernel(kernel)
            if chosen in COMPILED:
                from zdl.engine.compiled import compiled_group_gradient

                return compiled_group_gradient(self.layout, checked, x_arr, labels, threads, check,
                                               closed_form=chosen == "closed-form")
            return incremental_group_gradient(self.layout, checked, x_arr, labels, check)
        out = np.empty(self.size)
        full = backprop_gradient(checked, x_arr, labels, check) if method == "backprop" else None
        for block, place in zip(self.blocks, self.layout.split(out), strict=True):
            place[:] = reference_block_gradient(block, checked, x_arr, labels, check) if full is None \
                else full[block.param].reshape(-1)[block.start : block.stop]
        return out


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
    aborts the call. kernel: "closed-form", "numba" (evaluated), "numpy" or "auto" for `numerical`
    (default: $ZDL_KERNEL, see `zdl.engine.kernel`). Extra memory stays under
    `zdl.engine.budget.MEMORY_BUDGET` at admitted shapes.
    A worker computing the same blocks every step prepares them once as a `BlockGroup`.
    """
    checked = check_params(params)
    group = BlockGroup(blocks, param_shapes(checked))
    values = group.gradient(checked, x, t, method, threads=threads, check=check, kernel=kernel)
    return group.layout.split(values)


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
    group = _whole_group(tuple(shapes[name] for name in PARAM_NAMES), n_blocks)
    values = group.gradient(checked, x_arr, labels, method, threads=threads, check=check, kernel=kernel)
    return assemble(shapes, list(zip(group.blocks, group.layout.split(values), strict=True)))


@lru_cache(maxsize=16)
def _whole_group(shapes: tuple[tuple[int, ...], ...], n_blocks: int) -> BlockGroup:
    """The `partition(n_blocks)` blocks of these shapes as one group, planned once per process (a training
    loop asks for the same shapes every step)."""
    named = dict(zip(PARAM_NAMES, shapes, strict=True))
    return BlockGroup(partition(named, n_blocks=n_blocks), named)
