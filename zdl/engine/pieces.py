"""W1 and b1 blocks as work on hidden units: rows of pixels that share a range of hidden units.

b1 is treated as one more row of W1, row `input_size`, as if every sample had a pixel of value 1 there.
A block of W1 (or b1) covers parts of one or more rows; each part is a (row, unit range) piece, and the
pieces with the same unit range are computed together, so that their (sample, value) pairs are shared.
The results come back in one flat array, each block's values a contiguous slice of it (`GroupLayout`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

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
    blocks: Sequence[Block], input_size: int, hidden: int, offsets: NDArray[np.intp]
) -> list[UnitRangeWork]:
    """The unit-range work of W1/b1 blocks whose values start at `offsets` in the flat output."""
    extended = [b.start + (input_size * hidden if b.param == "b1" else 0) for b in blocks]
    starts = np.array(extended, dtype=np.intp)
    stops = starts + np.array([b.size for b in blocks], dtype=np.intp)
    first_row, last_row = starts // hidden, (stops - 1) // hidden
    counts = last_row - first_row + 1
    piece_block = np.repeat(np.arange(len(blocks)), counts)
    row = first_row[piece_block] + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    lo = np.maximum(starts[piece_block] - row * hidden, 0)
    hi = np.minimum(stops[piece_block] - row * hidden, hidden)
    destination = offsets[piece_block] + row * hidden + lo - starts[piece_block]
    unit_ranges, piece_range = np.unique(lo * (hidden + 1) + hi, return_inverse=True)
    work = []
    for r, key in enumerate(unit_ranges.tolist()):
        unit_lo, unit_hi = divmod(key, hidden + 1)
        mine = piece_range == r
        rows, row_position = np.unique(row[mine], return_inverse=True)
        work.append(UnitRangeWork(unit_lo, unit_hi, rows.astype(np.intp), row_position, destination[mine]))
    return work


@dataclass(frozen=True)
class GroupLayout:
    """Blocks computed together, planned once: their values come out laid end to end in the blocks' order
    (what a worker sends), the W1/b1 blocks' pieces scattered straight to their places. A worker that
    computes the same group every step (hundreds of one-row blocks) keeps its layout instead of planning
    it again each time."""

    blocks: tuple[Block, ...]
    offsets: tuple[int, ...]  # each block's start in the output, then the output's size
    input_size: int
    hidden_size: int

    @classmethod
    def of(cls, blocks: Sequence[Block], input_size: int, hidden: int) -> GroupLayout:
        offsets = np.cumsum([0, *(b.size for b in blocks)]).tolist()
        return cls(tuple(blocks), tuple(offsets), input_size, hidden)

    @cached_property
    def hidden(self) -> tuple[UnitRangeWork, ...]:
        """The W1/b1 blocks' work, destinations indexing the output; planned at the first numerical call
        (other methods never need it)."""
        on_hidden = [k for k, b in enumerate(self.blocks) if b.param in ("W1", "b1")]
        if not on_hidden:
            return ()
        starts = np.array([self.offsets[k] for k in on_hidden], dtype=np.intp)
        return tuple(hidden_work([self.blocks[k] for k in on_hidden], self.input_size, self.hidden_size, starts))

    @cached_property
    def _hidden_places(self) -> tuple[slice | NDArray[np.intp], ...]:
        """Where each piece's (rows, units) values go in the output: one slice where they lie end to end
        in row order (a whole W1, or whole rows), else the flat indices of every value."""
        places: list[slice | NDArray[np.intp]] = []
        for piece in self.hidden:
            units = piece.unit_hi - piece.unit_lo
            first = int(piece.destination[0])
            end_to_end = len(piece.row_position) == len(piece.rows) and np.array_equal(
                piece.row_position, np.arange(len(piece.rows))) and np.array_equal(
                piece.destination, first + units * np.arange(len(piece.rows)))
            places.append(slice(first, first + units * len(piece.rows)) if end_to_end
                          else piece.destination[:, None] + np.arange(units))
        return tuple(places)

    @cached_property
    def logits(self) -> tuple[tuple[int, Block], ...]:
        """(output start, block) of each W2/b2 block."""
        return tuple((self.offsets[k], b) for k, b in enumerate(self.blocks) if b.param in ("W2", "b2"))

    @property
    def size(self) -> int:
        return self.offsets[-1]

    def values(
        self,
        rows_gradient: Callable[[UnitRangeWork], NDArray[np.float64]],
        logit_values: Callable[[Block], NDArray[np.float64]],
    ) -> NDArray[np.float64]:
        """The blocks' values end to end: W1/b1 from `rows_gradient(work)` ((len(work.rows), units) for one
        unit range), W2/b2 from `logit_values(block)` (block.size values)."""
        out = np.empty(self.size)
        for piece, place in zip(self.hidden, self._hidden_places, strict=True):
            grad = rows_gradient(piece)
            if isinstance(place, slice):
                out[place] = grad.reshape(-1)
            else:
                out[place] = grad[piece.row_position]
        for start, block in self.logits:
            out[start : start + block.size] = logit_values(block)
        return out

    def split(self, values: NDArray[np.float64]) -> list[NDArray[np.float64]]:
        """`values()` cut into one array per block (views)."""
        return [values[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:], strict=True)]
