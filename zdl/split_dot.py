"""Large matrix products as two halves computed at the same time, each by a single-threaded BLAS call.

Gradients must have the same bits whatever the machine's thread count (zdl/engine/threads.py), so their
products run on one BLAS thread, and OpenBLAS may not split them across cores itself. This module splits
a product at a fixed place instead: the rows of `a` in two halves, one computed by a helper thread while
the caller computes the other (NumPy releases the GIL inside BLAS). Every entry is still summed by one
single-threaded BLAS call over the same inner dimension, so the result has the bits of the unsplit
product (tests/zdl/test_split_dot.py checks this), and they never depend on how many cores there are:
with one core the halves simply take turns.

The training loop (zdl.train) computes the products with the 784 input pixels this way, inside
`single_threaded_blas()`; elsewhere plain np.dot is used. Only products of MIN_MULTIPLY_ADDS or more
(the per-epoch evaluations' thousands of rows) are split: a batch's (100 x 784 x 50, about 4 million)
stays whole, since handing half of it over cost more than it saved on the project's Intel VM, whose two
vCPUs share much of one core (the backprop loop went from 1.15x to 0.90x the book's own loop's time).
"""

from __future__ import annotations

import os
import queue
import threading
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Products with fewer multiply-adds than this are not worth a hand-over to the helper thread (see above).
MIN_MULTIPLY_ADDS = 20_000_000


class _Helper:
    """A thread that computes `np.dot(a, b, out)` for each request, and reports back."""

    def __init__(self) -> None:
        self.requests: queue.SimpleQueue[tuple[NDArray[Any], NDArray[Any], NDArray[Any]]] = queue.SimpleQueue()
        self.replies: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="zdl-split-dot", daemon=True).start()

    def _serve(self) -> None:
        while True:
            a, b, out = self.requests.get()
            try:
                np.dot(a, b, out)
                self.replies.put(None)
            except BaseException as exc:  # handed to the caller, who raises it
                self.replies.put(exc)


@cache
def _helper(pid: int) -> _Helper:
    """This process's helper (keyed by pid: a forked child, e.g. a Celery pool process, needs its own)."""
    return _Helper()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def split_dot(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """a @ b for float64 a (M, K) and b (K, N), with the bits of one single-threaded np.dot.

    Products of at least MIN_MULTIPLY_ADDS are computed as rows [:M//2] and [M//2:] of a, at the same time
    where there are two cores. Whether a product is split depends only on the shapes.
    """
    rows, inner = a.shape
    cols = b.shape[1]
    if rows < 2 or rows * inner * cols < MIN_MULTIPLY_ADDS:
        return np.dot(a, b)
    out = np.empty((rows, cols))
    half = rows // 2
    if _cores() < 2:
        np.dot(a[:half], b, out[:half])
        np.dot(a[half:], b, out[half:])
        return out
    helper = _helper(os.getpid())
    helper.requests.put((a[half:], b, out[half:]))
    try:
        np.dot(a[:half], b, out[:half])
    finally:
        failure = helper.replies.get()  # always wait: the helper writes into `out`
    if failure is not None:
        raise failure
    return out
