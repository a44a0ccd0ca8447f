"""Compiled kernel: the unperturbed forward pass, sample by sample in a fixed order (see `compiled.py`).

Every sum runs in one fixed order (pixels ascending, then hidden units ascending, then classes), so a
sample's results have the same bits whichever thread or process computes it and whatever else is in its
batch; no BLAS, whose rounding depends on its thread count and blocking.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, error_model="numpy")
def forward_rows(x, w1, b1, w2, b2, labels, n_lo, n_hi, z1, e, s, e_t):
    """Samples n_lo..n_hi-1: z1 = sigmoid(x W1 + b1), e = exp(a2 - max a2), s = sum e, e_t = e[target]."""
    input_size, hidden = w1.shape
    classes = w2.shape[1]
    a1 = np.empty(hidden)
    a2 = np.empty(classes)
    for n in range(n_lo, n_hi):
        for j in range(hidden):
            a1[j] = 0.0
        for i in range(input_size):
            v = x[n, i]
            if v != 0.0:  # a zero pixel adds 0.0 (MNIST: four pixels in five)
                for j in range(hidden):
                    a1[j] += v * w1[i, j]
        for j in range(hidden):
            z1[n, j] = 1.0 / (1.0 + math.exp(-(a1[j] + b1[j])))
        for k in range(classes):
            a2[k] = 0.0
        for j in range(hidden):
            z = z1[n, j]
            for k in range(classes):
                a2[k] += z * w2[j, k]
        top = -np.inf
        for k in range(classes):
            a2[k] += b2[k]
            top = max(top, a2[k])
        total = 0.0
        for k in range(classes):
            e[n, k] = math.exp(a2[k] - top)
            total += e[n, k]
        s[n] = total
        e_t[n] = e[n, labels[n]]
