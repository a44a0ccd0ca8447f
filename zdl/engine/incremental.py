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

This is the NumPy kernel: the readable reference of the compiled one (`compiled.py`) and the fallback
where Numba is missing. Work goes in chunks of samples (`budget`); a chunk's per-sample sums are added
to the previous chunks' in ascending sample order, so chunking never changes the bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from zdl.engine import budget
from zdl.engine.blocks import Block
from zdl.engine.budget import Check, no_check
from zdl.engine.inputs import Params
from zdl.engine.pieces import GroupLayout, UnitRangeWork
from zdl.engine.series import SMALL_EXPONENT
from zdl.engine.threads import single_threaded_blas
from zdl.functions import DELTA, sigmoid
from zdl.gradient import H

#: Rows of (sample, value) pairs processed together: keeps the (classes, rows, hidden) work arrays in cache.
CHUNK_ELEMENTS = 1 << 17

__all__ = ["SMALL_EXPONENT", "exp_near_zero", "incremental_group_gradient"]  # SMALL_EXPONENT: see `series`


@dataclass(frozen=True)
class BaseForward:
    """Unperturbed forward pass of one batch, shared by every block of an iteration."""

    z1: NDArray[np.float64]  # (N, hidden) sigmoid(a1)
    e: NDArray[np.float64]  # (N, classes) exp(a2 - max a2)
    s: NDArray[np.float64]  # (N,) row sums of e
    e_t: NDArray[np.float64]  # (N,) e at the target class
    labels: NDArray[np.intp]  # (N,)


def base_forward(
    params: Params, x: NDArray[np.float64], labels: NDArray[np.intp], check: Check = no_check
) -> BaseForward:
    """The forward pass on one BLAS thread, in chunks of samples that depend on the shapes alone."""
    batch, hidden = x.shape[0], params["W1"].shape[1]
    z1, e = np.empty((batch, hidden)), np.empty((batch, params["W2"].shape[1]))
    step = budget.samples_per_chunk(32 * hidden, budget.NUMPY_CHUNK_BYTES)  # a few (chunk, hidden) temporaries
    with single_threaded_blas():
        for lo in range(0, batch, step):
            z1[lo : lo + step] = sigmoid(np.dot(x[lo : lo + step], params["W1"]) + params["b1"])
            a2 = np.dot(z1[lo : lo + step], params["W2"]) + params["b2"]
            e[lo : lo + step] = np.exp(a2 - np.max(a2, axis=1, keepdims=True))
            check()
    return BaseForward(z1, e, e.sum(axis=1), e[np.arange(len(labels)), labels], labels)


def hidden_shift_loss_diff(
    fwd: BaseForward,
    w2: NDArray[np.float64],
    samples: NDArray[np.intp],
    values: NDArray[np.float64],
    units: slice = slice(None),
    check: Check = no_check,
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
        check()
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


def hidden_rows_gradient(
    fwd: BaseForward, w2: NDArray[np.float64], x: NDArray[np.float64], work: UnitRangeWork, check: Check = no_check
) -> NDArray[np.float64]:
    """dL/dW1[i, units] for the rows i of `work` (row input_size: dL/db1[units]); (len(rows), units)."""
    batch, input_size = x.shape
    units = slice(work.unit_lo, work.unit_hi)
    rows = work.rows
    grad = np.zeros((len(rows), work.unit_hi - work.unit_lo))
    # diffs of every (row, sample) entry and two copies of them: (chunk * rows, units) each
    step = budget.samples_per_chunk(24 * len(rows) * grad.shape[1], budget.NUMPY_CHUNK_BYTES)
    for lo in range(0, batch, step):
        pixels = np.ones((len(rows), min(step, batch - lo)))  # (rows, samples); row input_size is b1's 1
        pixels[rows < input_size] = x[lo : lo + step, rows[rows < input_size]].T
        row_idx, sample_idx = np.nonzero(pixels)  # row by row, samples ascending
        if row_idx.size == 0:
            continue
        values = pixels[row_idx, sample_idx]
        # Distinct (sample, value) pairs: one integer key per pair, from the value's rank among all values.
        distinct_values, value_code = np.unique(values, return_inverse=True)
        keys, pair_of_entry = np.unique(sample_idx * len(distinct_values) + value_code, return_inverse=True)
        samples, codes = np.divmod(keys, len(distinct_values))
        diffs = hidden_shift_loss_diff(fwd, w2, samples + lo, distinct_values[codes], units, check)
        present, starts = np.unique(row_idx, return_index=True)
        entries = diffs[pair_of_entry]
        if lo > 0:  # continue each row's running sum: it goes first in its segment
            entries = np.insert(entries, starts, grad[present], axis=0)
            starts = starts + np.arange(len(starts))
        grad[present] = np.add.reduceat(entries, starts, axis=0)
    return grad / batch / (2 * H)


def logit_gradient(fwd: BaseForward, inputs: NDArray[np.float64], check: Check = no_check) -> NDArray[np.float64]:
    """dL/dW for a weight W[j, k] that moves logit k of sample n by inputs[n, j] * h; shape (inputs, classes).

    W2 uses inputs = z1; b2 uses a column of ones. Only logit k changes: s' = s + E[n, k] expm1(+-u h).
    """
    batch, classes = fwd.e.shape
    total_diff = np.zeros((inputs.shape[1], classes))
    step = budget.samples_per_chunk(64 * inputs.shape[1] * classes, budget.NUMPY_CHUNK_BYTES)
    for lo in range(0, batch, step):
        chunk = slice(lo, lo + step)
        is_target = np.arange(classes)[None, None, :] == fwd.labels[chunk, None, None]  # (n, 1, classes)

        def loss(sign: float, chunk: slice = chunk, is_target: NDArray[np.bool_] = is_target) -> NDArray[np.float64]:
            u = (sign * H) * inputs[chunk, :, None]  # (n, inputs, 1)
            total = fwd.s[chunk, None, None] + fwd.e[chunk, None, :] * np.expm1(u)
            target = fwd.e_t[chunk, None, None] * np.where(is_target, np.exp(u), 1.0)
            return -np.log(target / total + DELTA)

        diffs = loss(1.0) - loss(-1.0)
        if lo > 0:  # the running sum first, then this chunk's samples in order
            diffs = np.concatenate([total_diff[None], diffs])
        total_diff = diffs.sum(axis=0)
        check()
    return total_diff / batch / (2 * H)


def incremental_group_gradient(
    layout: GroupLayout,
    params: Params,
    x: NDArray[np.float64],
    labels: NDArray[np.intp],
    check: Check = no_check,
) -> NDArray[np.float64]:
    """The layout's blocks' central differences, computed incrementally, end to end (see `GroupLayout`)."""
    fwd = base_forward(params, x, labels, check)
    w2 = params["W2"]
    whole: dict[str, NDArray[np.float64]] = {}

    def logit_values(block: Block) -> NDArray[np.float64]:
        if block.param not in whole:
            inputs = fwd.z1 if block.param == "W2" else np.ones((len(fwd.labels), 1))
            whole[block.param] = logit_gradient(fwd, inputs, check).reshape(-1)
        return whole[block.param][block.start : block.stop]

    return layout.values(lambda work: hidden_rows_gradient(fwd, w2, x, work, check), logit_values)
