"""Parameter blocks: contiguous ranges of one parameter's flat indices, the unit of gradient work.

A block is small and JSON-able so it can travel in a task message; the arrays it refers to travel
separately (shared memory, Redis). Every entry of every parameter lies in exactly one block.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

PARAM_NAMES = ("W1", "b1", "W2", "b2")
Shapes = Mapping[str, tuple[int, ...]]


@dataclass(frozen=True, order=True)
class Block:
    """Entries `start:stop` of `params[param].ravel()`."""

    param: str
    start: int
    stop: int

    def __post_init__(self) -> None:
        if self.param not in PARAM_NAMES:
            raise ValueError(f"Block: unknown parameter {self.param!r}; expected one of {list(PARAM_NAMES)}")
        if not (0 <= self.start < self.stop):
            raise ValueError(f"Block: need 0 <= start < stop, got {self.param}[{self.start}:{self.stop}]")

    @property
    def size(self) -> int:
        return self.stop - self.start

    def to_dict(self) -> dict[str, Any]:
        return {"param": self.param, "start": self.start, "stop": self.stop}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Block:
        try:
            return cls(str(data["param"]), int(data["start"]), int(data["stop"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"Block.from_dict: expected keys param, start, stop; got {dict(data)!r}") from exc

    def check(self, shapes: Shapes) -> None:
        """Raise ValueError if this block does not fit inside its parameter."""
        size = math.prod(shapes[self.param])
        if self.stop > size:
            raise ValueError(f"Block {self}: out of range, {self.param} has {size} entries")

    def __str__(self) -> str:
        return f"{self.param}[{self.start}:{self.stop}]"


def param_shapes(params: Mapping[str, NDArray[np.float64]]) -> dict[str, tuple[int, ...]]:
    """{name: shape} for the four parameters, in the canonical order."""
    return {name: tuple(params[name].shape) for name in PARAM_NAMES}


def partition(shapes: Shapes, *, n_blocks: int | None = None, max_size: int | None = None) -> list[Block]:
    """Split all parameters into blocks that cover every entry exactly once.

    With `n_blocks`, the parameters' entries, laid end to end in the order W1 b1 W2 b2, are cut into
    n_blocks near-equal ranges, and a range that straddles two parameters is cut there as well (so up
    to n_blocks + 3 blocks come back). With `max_size`, every block has at most that many entries.
    """
    if (n_blocks is None) == (max_size is None):
        raise ValueError("partition: give exactly one of n_blocks or max_size")
    sizes = [math.prod(shapes[name]) for name in PARAM_NAMES]
    total = sum(sizes)
    if n_blocks is not None:
        if int(n_blocks) != n_blocks or n_blocks < 1:
            raise ValueError(f"partition: n_blocks must be a positive integer, got {n_blocks!r}")
        cuts = {round(k * total / n_blocks) for k in range(n_blocks + 1)}
    else:
        assert max_size is not None
        if int(max_size) != max_size or max_size < 1:
            raise ValueError(f"partition: max_size must be a positive integer, got {max_size!r}")
        cuts = set()
    offsets = np.cumsum([0, *sizes]).tolist()
    cuts |= set(offsets)
    blocks: list[Block] = []
    for name, begin, end in zip(PARAM_NAMES, offsets[:-1], offsets[1:], strict=True):
        inner = sorted(c for c in cuts if begin <= c <= end)
        for lo, hi in zip(inner[:-1], inner[1:], strict=True):
            step = max_size or hi - lo
            blocks.extend(Block(name, s - begin, min(s + step, hi) - begin) for s in range(lo, hi, step))
    return blocks


def assemble(shapes: Shapes, pieces: Sequence[tuple[Block, NDArray[np.float64]]]) -> dict[str, NDArray[np.float64]]:
    """Gradient arrays of the given shapes from (block, values) pieces; checks full, single coverage."""
    flat = {name: np.empty(math.prod(shapes[name])) for name in PARAM_NAMES}
    covered = {name: np.zeros(math.prod(shapes[name]), dtype=np.int8) for name in PARAM_NAMES}
    for block, values in pieces:
        block.check(shapes)
        if np.shape(values) != (block.size,):
            raise ValueError(f"assemble: block {block} needs {block.size} values, got shape {np.shape(values)}")
        flat[block.param][block.start : block.stop] = values
        covered[block.param][block.start : block.stop] += 1
    for name, count in covered.items():
        if not np.all(count == 1):
            raise ValueError(f"assemble: the blocks do not cover {name} exactly once")
    return {name: flat[name].reshape(shapes[name]) for name in PARAM_NAMES}


def block_groups(shapes: Shapes, n_groups: int) -> list[list[Block]]:
    """All parameters split into n_groups lists of blocks of about equal work, one list per worker.

    Group k gets hidden units [c_k, c_k+1) of W1 (that column of every pixel row: one block per row), of b1
    and of W2. The (sample, pixel value) pairs that make the W1 work are then shared inside each group
    rather than recomputed in every group, as horizontal bands of W1 would need. b2 goes to the last group.
    With more groups than hidden units, the groups are `partition(n_blocks=n_groups)` instead.
    """
    if int(n_groups) != n_groups or n_groups < 1:
        raise ValueError(f"block_groups: n_groups must be a positive integer, got {n_groups!r}")
    input_size, hidden = shapes["W1"]
    output = shapes["b2"][0]
    if n_groups > hidden:
        return _partition_groups(shapes, n_groups)
    cuts = [round(k * hidden / n_groups) for k in range(n_groups + 1)]
    groups = [
        [Block("W1", i * hidden + lo, i * hidden + hi) for i in range(input_size)]
        + [Block("b1", lo, hi), Block("W2", lo * output, hi * output)]
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)
    ]
    groups[-1].append(Block("b2", 0, output))
    return groups


def _partition_groups(shapes: Shapes, n_groups: int) -> list[list[Block]]:
    """`partition(n_blocks=n_groups)` grouped by the near-equal range each block starts in."""
    sizes = [math.prod(shapes[name]) for name in PARAM_NAMES]
    offsets = dict(zip(PARAM_NAMES, np.cumsum([0, *sizes]).tolist(), strict=False))
    cuts = [round(k * sum(sizes) / n_groups) for k in range(n_groups)]  # the same cuts as partition()
    groups: list[list[Block]] = [[] for _ in range(n_groups)]
    for block in partition(shapes, n_blocks=n_groups):
        groups[bisect.bisect_right(cuts, offsets[block.param] + block.start) - 1].append(block)
    return groups
