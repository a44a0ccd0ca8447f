"""W1 and b1 blocks as work on hidden units: rows of pixels that share a range of hidden units.

b1 is treated as one more row of W1, row `input_size`, as if every sample had a pixel of value 1 there.
A block of W1 (or b1) covers parts of one or more rows; each part is a (row, unit range) piece, and the
pieces with the same unit range are computed together, so that their (sample, value) pairs are shared.
The results come back in one flat array, each block's values a contiguous slice of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from zdl.engine.blocks import Block


@dataclass(frozen=True)
class UnitRangeWork:
    """Rows (ascending; `input_size` is b1) wanted at hidden units unit_lo..unit_hi-1, and where they go."""

    unit_lo: int
    unit_hi: int
    rows: NDArray[np.intp]
    row_position: NDArray[np.intp]  # per piece: its row's index in `rows`
    destination: NDArray[np.intp]  # per piece: flat output index of its first unit


def hidden_work(
    blocks: Sequence[Block], input_size: int, hidden: int
) -> tuple[list[UnitRangeWork], NDArray[np.intp], NDArray[np.intp]]:
    """The unit-range work of W1/b1 blocks, and each block's start and stop in the flat output."""
    extended = [b.start + (input_size * hidden if b.param == "b1" else 0) for b in blocks]
    starts = np.array(extended, dtype=np.intp)
    stops = starts + np.array([b.size for b in blocks], dtype=np.intp)
    first_row, last_row = starts // hidden, (stops - 1) // hidden
    counts = last_row - first_row + 1
    piece_block = np.repeat(np.arange(len(blocks)), counts)
    row = first_row[piece_block] + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    lo = np.maximum(starts[piece_block] - row * hidden, 0)
    hi = np.minimum(stops[piece_block] - row * hidden, hidden)
    block_offset = np.cumsum(stops - starts) - (stops - starts)
    destination = block_offset[piece_block] + row * hidden + lo - starts[piece_block]
    unit_ranges, piece_range = np.unique(lo * (hidden + 1) + hi, return_inverse=True)
    work = []
    for r, key in enumerate(unit_ranges.tolist()):
        unit_lo, unit_hi = divmod(key, hidden + 1)
        mine = piece_range == r
        rows, row_position = np.unique(row[mine], return_inverse=True)
        work.append(UnitRangeWork(unit_lo, unit_hi, rows.astype(np.intp), row_position, destination[mine]))
    return work, block_offset, block_offset + stops - starts


def hidden_blocks_gradient(
    blocks: Sequence[Block],
    input_size: int,
    hidden: int,
    rows_gradient: Callable[[UnitRangeWork], NDArray[np.float64]],
) -> list[NDArray[np.float64]]:
    """Each W1/b1 block's gradient, from `rows_gradient(work)`: (len(work.rows), units) for one unit range."""
    if not blocks:
        return []
    work, block_start, block_stop = hidden_work(blocks, input_size, hidden)
    flat = np.empty(int(block_stop[-1]) if len(block_stop) else 0)
    for piece in work:
        grad = rows_gradient(piece)
        flat[piece.destination[:, None] + np.arange(piece.unit_hi - piece.unit_lo)] = grad[piece.row_position]
    return [flat[a:b] for a, b in zip(block_start.tolist(), block_stop.tolist(), strict=True)]
