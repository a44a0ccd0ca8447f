"""`numerical`: the book's central differences, evaluated exactly but only where the loss changes.

The loss is a mean of per-sample terms l_n = -log(y_n[t_n] + 1e-7). Perturbing one weight by +-h changes
only some terms, and only through one path:

* W1[i, j] moves hidden pre-activation a1[n, j] by x[n, i] * h, so it touches only samples whose pixel i
  is non-zero, and only hidden unit j of them. The change of l_n depends on (n, j, x[n, i]) alone, so it
  is computed once per distinct (sample, pixel value) pair and hidden unit, then summed per weight.
* b1[j] is the same with a pixel of value 1 present in every sample.
* W2[j, k] moves logit a2[n, k] by z1[n, j] * h; b2[k] moves it by h.

The hidden unit's change is taken from exact identities of the sigmoid (`sigmoid_change`), with one exp
per (sample, value) pair rather than one per pair and hidden unit.

The softmax is evaluated against the unperturbed row maximum: s' = sum_k E[n, k] exp(dz W2[j, k]) with
E = exp(a2 - max a2). Both identities (shift invariance of the softmax, exp(a + b) = exp(a) exp(b)) are
exact in real arithmetic, and exp of the tiny exponents dz W2 is its Taylor polynomial up to u^4, whose
truncation error is far below rounding, so the result differs from `numerical-reference` by rounding
alone. Every gradient entry is computed by the same elementwise operations and summed over samples in
ascending order whatever block it falls in, so any partition gives bit-identical gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from zdl.engine.blocks import Block
from zdl.engine.inputs import Params
from zdl.engine.threads import single_threaded_blas
from zdl.functions import DELTA, sigmoid
from zdl.gradient import H

#: Rows of (sample, value) pairs processed together: keeps the (classes, rows, hidden) work arrays in cache.
CHUNK_ELEMENTS = 1 << 17

#: Below this |u|, exp(u) = 1 + u + u^2/2 + u^3/6 + u^4/24 to within u^5/120 < 1e-17, a tenth of the
#: rounding of a number near 1. The polynomial is 5x cheaper than np.exp where NumPy has no vectorized
#: exp for float64 (CPUs without AVX-512), and exp is most of the engine's work.
SMALL_EXPONENT = 1e-3


@dataclass(frozen=True)
class BaseForward:
    """Unperturbed forward pass of one batch, shared by every block of an iteration."""

    z1: NDArray[np.float64]  # (N, hidden) sigmoid(a1)
    e: NDArray[np.float64]  # (N, classes) exp(a2 - max a2)
    s: NDArray[np.float64]  # (N,) row sums of e
    e_t: NDArray[np.float64]  # (N,) e at the target class
    labels: NDArray[np.intp]  # (N,)


def base_forward(params: Params, x: NDArray[np.float64], labels: NDArray[np.intp]) -> BaseForward:
    with single_threaded_blas():
        a1 = np.dot(x, params["W1"]) + params["b1"]
        z1 = sigmoid(a1)
        a2 = np.dot(z1, params["W2"]) + params["b2"]
    e = np.exp(a2 - np.max(a2, axis=1, keepdims=True))
    return BaseForward(z1, e, e.sum(axis=1), e[np.arange(len(labels)), labels], labels)


def hidden_shift_loss_diff(
    fwd: BaseForward,
    w2: NDArray[np.float64],
    samples: NDArray[np.intp],
    values: NDArray[np.float64],
    units: slice = slice(None),
) -> NDArray[np.float64]:
    """l_n(a1[n, j] + v h) - l_n(a1[n, j] - v h) for each (sample n, value v) row and hidden unit j in `units`.

    Returns (rows, units). Rows are processed in chunks; each (row, unit)'s arithmetic is elementwise, the
    same in any chunk and for any range of units.
    """
    w2_cols = np.ascontiguousarray(w2[units].T)  # (classes, units)
    classes, hidden = w2_cols.shape
    out = np.empty((len(samples), hidden))
    step = max(1, CHUNK_ELEMENTS // max(1, hidden * classes))
    for lo in range(0, len(samples), step):
        n = samples[lo : lo + step]
        shift = (values[lo : lo + step] * H)[:, None]
        z1 = fwd.z1[n, units]
        z1_complement = 1.0 - z1
        loss_plus = _loss_after_hidden_change(fwd, w2_cols, n, sigmoid_change(z1, z1_complement, shift))
        loss_minus = _loss_after_hidden_change(fwd, w2_cols, n, sigmoid_change(z1, z1_complement, -shift))
        out[lo : lo + step] = loss_plus - loss_minus
    return out


def sigmoid_change(
    z: NDArray[np.float64], z_complement: NDArray[np.float64], shift: NDArray[np.float64]
) -> NDArray[np.float64]:
    """sigmoid(a + shift) - sigmoid(a), from z = sigmoid(a) and z_complement = 1 - z; shift is per row.

    Exact identities: sigmoid(a + d) = z / (z + (1 - z) e^-d) and sigmoid(a + d) - z =
    (1 - e^-d) sigmoid(a + d) (1 - z). One exp per row instead of one per element, and no difference
    of two nearly equal numbers.
    """
    decay = np.exp(-shift)
    moved = z / (z + z_complement * decay)
    moved *= z_complement
    moved *= -np.expm1(-shift)
    return moved


def _loss_after_hidden_change(
    fwd: BaseForward, w2_cols: NDArray[np.float64], n: NDArray[np.intp], dz: NDArray[np.float64]
) -> NDArray[np.float64]:
    """-log(y_t + 1e-7) after hidden unit j of sample n moves by dz[row, j]; shape (rows, hidden)."""
    factors = np.multiply(dz[None, :, :], w2_cols[:, None, :])  # (classes, rows, hidden)
    exp_near_zero(factors)
    target = factors[fwd.labels[n], np.arange(len(n))]
    np.multiply(factors, fwd.e[n].T[:, :, None], out=factors)
    total = factors[0].copy()
    for k in range(1, w2_cols.shape[0]):
        total += factors[k]
    return -np.log(fwd.e_t[n][:, None] * target / total + DELTA)


def exp_near_zero(u: NDArray[np.float64]) -> None:
    """u <- exp(u), in place: the Taylor polynomial where |u| < SMALL_EXPONENT, np.exp elsewhere.

    Each element's result depends on its own value alone, never on its neighbours (bit-identical blocks).
    """
    large = exact = None
    if u.size and not -SMALL_EXPONENT < u.min() <= u.max() < SMALL_EXPONENT:  # two reductions, no copies
        large = np.abs(u) >= SMALL_EXPONENT
        exact = np.exp(u[large])
    powers = u * (1 / 24)
    for coefficient in (1 / 6, 1 / 2, 1.0):
        powers += coefficient
        powers *= u
    np.add(powers, 1.0, out=u)
    if large is not None:
        u[large] = exact


def w1_gradient_rows(
    fwd: BaseForward, w2: NDArray[np.float64], x: NDArray[np.float64], rows: NDArray[np.intp], units: slice
) -> NDArray[np.float64]:
    """dL/dW1[i, units] for the pixel rows i in `rows` (ascending); shape (len(rows), len(units))."""
    batch = x.shape[0]
    grad = np.zeros((len(rows), len(range(w2.shape[0])[units])))
    pixels = x[:, rows].T  # (rows, N): non-zeros come out row by row, samples ascending
    row_idx, sample_idx = np.nonzero(pixels)
    if row_idx.size == 0:
        return grad
    values = pixels[row_idx, sample_idx]
    # Distinct (sample, value) pairs: one integer key per pair, from the value's rank among all values.
    distinct_values, value_code = np.unique(values, return_inverse=True)
    keys, pair_of_entry = np.unique(sample_idx * len(distinct_values) + value_code, return_inverse=True)
    samples, codes = np.divmod(keys, len(distinct_values))
    diffs = hidden_shift_loss_diff(fwd, w2, samples, distinct_values[codes], units)
    present, starts = np.unique(row_idx, return_index=True)
    sums = np.add.reduceat(diffs[pair_of_entry], starts, axis=0)
    grad[present] = sums / batch / (2 * H)
    return grad


def b1_gradient(fwd: BaseForward, w2: NDArray[np.float64]) -> NDArray[np.float64]:
    """dL/db1: every sample's hidden pre-activation moves by h, as a pixel of value 1 would move it."""
    batch = len(fwd.labels)
    diffs = hidden_shift_loss_diff(fwd, w2, np.arange(batch), np.ones(batch))
    return diffs.sum(axis=0) / batch / (2 * H)


def logit_gradient(fwd: BaseForward, inputs: NDArray[np.float64]) -> NDArray[np.float64]:
    """dL/dW for a weight W[j, k] that moves logit k of sample n by inputs[n, j] * h; shape (inputs, classes).

    W2 uses inputs = z1; b2 uses a column of ones. Only logit k changes: s' = s + E[n, k] expm1(+-u h).
    """
    batch, classes = fwd.e.shape
    is_target = np.arange(classes)[None, None, :] == fwd.labels[:, None, None]  # (N, 1, classes)

    def loss(sign: float) -> NDArray[np.float64]:
        u = (sign * H) * inputs[:, :, None]  # (N, inputs, 1)
        total = fwd.s[:, None, None] + fwd.e[:, None, :] * np.expm1(u)
        target = fwd.e_t[:, None, None] * np.where(is_target, np.exp(u), 1.0)
        return -np.log(target / total + DELTA)

    return (loss(1.0) - loss(-1.0)).sum(axis=0) / batch / (2 * H)


def w1_blocks_gradient(
    fwd: BaseForward, w2: NDArray[np.float64], x: NDArray[np.float64], blocks: Sequence[Block]
) -> list[NDArray[np.float64]]:
    """Several W1 blocks at once: each block is cut into (row, unit range) pieces, and the pieces with the
    same unit range are computed together, sharing their (sample, value) pairs."""
    if not blocks:
        return []
    hidden = w2.shape[0]
    starts = np.array([b.start for b in blocks], dtype=np.intp)
    stops = np.array([b.stop for b in blocks], dtype=np.intp)
    first_row, last_row = starts // hidden, (stops - 1) // hidden
    counts = last_row - first_row + 1
    piece_block = np.repeat(np.arange(len(blocks)), counts)
    row = first_row[piece_block] + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    lo = np.maximum(starts[piece_block] - row * hidden, 0)
    hi = np.minimum(stops[piece_block] - row * hidden, hidden)
    block_offset = np.cumsum(stops - starts) - (stops - starts)
    destination = block_offset[piece_block] + row * hidden + lo - starts[piece_block]
    flat = np.empty(int((stops - starts).sum()))
    unit_ranges, piece_range = np.unique(lo * (hidden + 1) + hi, return_inverse=True)
    for r, key in enumerate(unit_ranges):
        unit_lo, unit_hi = divmod(int(key), hidden + 1)
        mine = piece_range == r
        rows, row_position = np.unique(row[mine], return_inverse=True)
        grad = w1_gradient_rows(fwd, w2, x, rows, slice(unit_lo, unit_hi))
        flat[destination[mine][:, None] + np.arange(unit_hi - unit_lo)] = grad[row_position]
    return [flat[a:b] for a, b in zip(block_offset.tolist(), (block_offset + stops - starts).tolist(), strict=True)]


def incremental_blocks_gradient(
    blocks: Sequence[Block],
    params: Params,
    x: NDArray[np.float64],
    labels: NDArray[np.intp],
    fwd: BaseForward | None = None,
) -> list[NDArray[np.float64]]:
    """The blocks' central differences, computed incrementally; pass `fwd` to share one forward pass."""
    fwd = fwd if fwd is not None else base_forward(params, x, labels)
    w2 = params["W2"]
    w1_at = [k for k, b in enumerate(blocks) if b.param == "W1"]
    results: dict[int, NDArray[np.float64]] = dict(
        zip(w1_at, w1_blocks_gradient(fwd, w2, x, [blocks[k] for k in w1_at]), strict=True)
    )
    whole: dict[str, NDArray[np.float64]] = {}
    for k, block in enumerate(blocks):
        if block.param == "W1":
            continue
        if block.param not in whole:
            whole[block.param] = _whole_small_param(block.param, fwd, w2)
        results[k] = whole[block.param][block.start : block.stop].copy()
    return [results[k] for k in range(len(blocks))]


def _whole_small_param(name: str, fwd: BaseForward, w2: NDArray[np.float64]) -> NDArray[np.float64]:
    if name == "b1":
        return b1_gradient(fwd, w2)
    if name == "W2":
        return logit_gradient(fwd, fwd.z1).reshape(-1)
    return logit_gradient(fwd, np.ones((len(fwd.labels), 1))).reshape(-1)


def incremental_block_gradient(
    block: Block,
    params: Params,
    x: NDArray[np.float64],
    labels: NDArray[np.intp],
    fwd: BaseForward | None = None,
) -> NDArray[np.float64]:
    """One block's central differences (see `incremental_blocks_gradient`)."""
    return incremental_blocks_gradient([block], params, x, labels, fwd)[0]
