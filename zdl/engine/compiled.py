"""`numerical` on the compiled kernels: validates nothing (compute.py did), allocates, chunks, threads.

The arithmetic is in `_forward_numba`, `_hidden_numba` and `_logits_numba` (the evaluated kernel), and in
`_series_numba` and `_series_logits_numba` (the closed form, see `closed_form`). Here the work is cut into
chunks of samples (memory and `check` calls, see `budget`) and the hidden units of one call are split
over `threads` threads (the kernels release the GIL). Every entry is computed by one thread, summing
its samples in ascending order, so the bits depend neither on the thread count nor on the chunking.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from zdl.engine import budget
from zdl.engine._forward_numba import forward_rows
from zdl.engine._hidden_numba import distinct_pairs, hidden_accumulate
from zdl.engine._logits_numba import logit_accumulate
from zdl.engine._series_logits_numba import closed_logit_accumulate
from zdl.engine._series_numba import closed_hidden_accumulate, weight_powers
from zdl.engine.blocks import Block
from zdl.engine.budget import Check, samples_per_chunk
from zdl.engine.inputs import Params
from zdl.engine.pieces import GroupLayout, UnitRangeWork
from zdl.gradient import H


@dataclass(frozen=True)
class Forward:
    """The unperturbed forward pass of one batch (see `_forward_numba.forward_rows`)."""

    z1: NDArray[np.float64]  # (N, hidden)
    e: NDArray[np.float64]  # (N, classes) exp(a2 - max a2)
    s: NDArray[np.float64]  # (N,)
    e_t: NDArray[np.float64]  # (N,)
    labels: NDArray[np.intp]  # (N,)


def fwd_arrays(fwd: Forward) -> tuple[NDArray[Any], ...]:
    """The forward pass as the kernels take it."""
    return fwd.z1, fwd.e, fwd.s, fwd.e_t, fwd.labels


@cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="zdl-kernel")


def _split(lo: int, hi: int, parts: int) -> list[tuple[int, int]]:
    """lo..hi cut into at most `parts` non-empty near-equal ranges."""
    parts = max(1, min(parts, hi - lo))
    cuts = [lo + round(k * (hi - lo) / parts) for k in range(parts + 1)]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


#: Multiply-adds (or pair-unit terms) below which a call stays on one thread: handing it to the pool costs
#: more than the thread saves (a forward pass of the book's batch, ~4 million, is faster on one thread).
MIN_THREADED_WORK = 20_000_000


#: (pixel row, unit, sample) terms below which the closed form's W1 stays on one thread: on the 2-core VM,
#: 784-50-10 (4 million, the book's batch) took 1.33 ms on one thread and 1.85 ms on two, 784-300-10 (24
#: million) 8.2 and 8.7 ms; the closed form's work per term is small, so handing out chunks costs more.
MIN_THREADED_SERIES_TERMS = 100_000_000


def _threads_for(work: int, threads: int) -> int:
    return threads if work >= MIN_THREADED_WORK else 1


def _run(kernel: Callable[..., object], calls: list[tuple[object, ...]], threads: int) -> None:
    """kernel(*args) for each args in `calls`, on `threads` threads when there is more than one."""
    if threads <= 1 or len(calls) <= 1:
        for args in calls:
            kernel(*args)
        return
    for future in [_pool(threads).submit(kernel, *args) for args in calls]:
        future.result()


def forward(params: Params, x: NDArray[np.float64], labels: NDArray[np.intp], threads: int, check: Check) -> Forward:
    batch, (input_size, hidden), classes = x.shape[0], params["W1"].shape, params["W2"].shape[1]
    z1, e = np.empty((batch, hidden)), np.empty((batch, classes))
    s, e_t = np.empty(batch), np.empty(batch)
    w1, b1, w2, b2 = (params[k] for k in ("W1", "b1", "W2", "b2"))
    threads = _threads_for(batch * (input_size * hidden + hidden * classes), threads)
    step = samples_per_chunk(input_size * hidden + hidden * classes, budget.FORWARD_MULTIPLY_ADDS * max(1, threads))
    for lo in range(0, batch, step):
        chunk = _split(lo, min(lo + step, batch), threads)
        _run(forward_rows, [(x, w1, b1, w2, b2, labels, a, b, z1, e, s, e_t) for a, b in chunk], threads)
        check()
    return Forward(z1, e, s, e_t, labels)


def hidden_rows_gradient(
    fwd: Forward, w2: NDArray[np.float64], x: NDArray[np.float64], work: UnitRangeWork, threads: int, check: Check,
    x_max: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """dL/dW1 (row input_size: dL/db1) for work.rows at units work.unit_lo..unit_hi-1: (rows, units).

    x_max: each sample's largest |pixel| (at least 1) for the closed form; None: the evaluated kernel."""
    batch = x.shape[0]
    units = work.unit_hi - work.unit_lo
    rows = np.ascontiguousarray(work.rows, dtype=np.int64)
    if x_max is not None and len(rows) * units * batch < MIN_THREADED_SERIES_TERMS:
        threads = 1
    ranges = _split(work.unit_lo, work.unit_hi, threads)
    # one accumulator per thread: threads writing neighbouring units of one row would share cache lines
    accs = [np.zeros((len(rows), v - u)) for u, v in ranges]
    w2_max = np.abs(w2).max(axis=1)
    w2t = np.ascontiguousarray(w2.T)
    if x_max is not None:  # the closed form: no (sample, value) pairs to share; its series per chunk
        step = min(samples_per_chunk(len(rows) * units, budget.CLOSED_FORM_ENTRY_UNITS),
                   samples_per_chunk(len(rows), budget.MAX_CHUNK_ENTRIES),
                   samples_per_chunk(units, budget.SERIES_PAIR_UNITS))
        wp = weight_powers(w2t)
        for lo in range(0, batch, step):
            hi = min(lo + step, batch)
            _run(closed_hidden_accumulate, [(x, *fwd_arrays(fwd), w2, w2t, wp, w2_max, x_max, rows, lo, hi, u, v, acc)
                                            for (u, v), acc in zip(ranges, accs, strict=True)], threads)
            check()
        return (accs[0] if len(accs) == 1 else np.hstack(accs)) / batch  # it sums quotients, not differences
    step = min(samples_per_chunk(len(rows) * units, budget.KERNEL_PAIR_UNITS),
               samples_per_chunk(len(rows), budget.MAX_CHUNK_ENTRIES))
    xbits = x.view(np.int64)
    size = min(step, batch) * len(rows)
    value, pair_value = np.empty(size), np.empty(size, np.int64)
    entry_row, entry_pair = np.empty(size, np.int64), np.empty(size, np.int64)
    pair_start, entry_start = np.empty(step + 1, np.int64), np.empty(step + 1, np.int64)
    for lo in range(0, batch, step):
        hi = min(lo + step, batch)
        n_values = distinct_pairs(x, xbits, rows, lo, hi, value, pair_start, pair_value, entry_start, entry_row,
                                  entry_pair)
        shared = (value, n_values, pair_start, pair_value, entry_start, entry_row, entry_pair)
        _run(hidden_accumulate, [(*fwd_arrays(fwd), w2, w2t, w2_max, lo, hi, *shared, u, v, acc, 0)
                                 for (u, v), acc in zip(ranges, accs, strict=True)], threads)
        check()
    acc = accs[0] if len(accs) == 1 else np.hstack(accs)
    return acc / batch / (2 * H)


def logit_units_gradient(
    fwd: Forward, bias: bool, u_lo: int, u_hi: int, threads: int, check: Check, closed_form: bool = False
) -> NDArray[np.float64]:
    """dL/dW2[u_lo:u_hi] as (units, classes), or dL/db2 as (1, classes) if `bias`."""
    batch, classes = fwd.e.shape
    acc = np.zeros((classes, u_hi - u_lo))
    step = samples_per_chunk((u_hi - u_lo) * classes, budget.KERNEL_PAIR_UNITS)
    # about 40 operations per (sample, unit, class) term
    ranges = _split(u_lo, u_hi, _threads_for(40 * batch * (u_hi - u_lo) * classes, threads))
    for lo in range(0, batch, step):
        hi = min(lo + step, batch)
        _run(closed_logit_accumulate if closed_form else logit_accumulate,
             [(fwd.z1, fwd.e, fwd.s, fwd.e_t, fwd.labels, bias, lo, hi, u, v, acc, u - u_lo) for u, v in ranges],
             threads)
        check()
    return (acc / batch if closed_form else acc / batch / (2 * H)).T


def compiled_group_gradient(
    layout: GroupLayout,
    params: Params,
    x: NDArray[np.float64],
    labels: NDArray[np.intp],
    threads: int,
    check: Check,
    closed_form: bool = False,
) -> NDArray[np.float64]:
    """The layout's blocks' central differences on the compiled kernels, end to end (see `GroupLayout`):
    evaluated, or in closed form with the evaluated kernel past the bound (`closed_form`)."""
    fwd = forward(params, x, labels, threads, check)
    w2 = params["W2"]
    classes = w2.shape[1]
    # each sample's largest shift over h, whatever rows a block holds (b1's pixel is 1): the bound's r / h
    x_max = np.maximum(np.abs(x).max(axis=1), 1.0) if closed_form and layout.hidden else None

    def logit_values(block: Block) -> NDArray[np.float64]:
        if block.param == "b2":
            return logit_units_gradient(fwd, True, 0, 1, threads, check, closed_form)[0, block.start : block.stop]
        u_lo, u_hi = block.start // classes, -(-block.stop // classes)
        grad = logit_units_gradient(fwd, False, u_lo, u_hi, threads, check, closed_form).reshape(-1)
        return grad[block.start - u_lo * classes : block.stop - u_lo * classes]

    return layout.values(lambda work: hidden_rows_gradient(fwd, w2, x, work, threads, check, x_max), logit_values)
