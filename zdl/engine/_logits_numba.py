"""Compiled kernel: dL/dW2 and dL/db2 by the book's central differences (see `compiled.py`).

W2[j, k] (or b2[k]) moves only logit k of sample n, by u = +-h z1[n, j] (or +-h), so
  s'(+-) = s + E[n, k] expm1(u),   a(+-) = E[n, t] (exp(u) if k == t else 1) / s' + 1e-7,
  l(+) - l(-) = log1p((a- - a+) / a+),
with expm1, exp and log1p as the polynomials of `series` (|u| <= h always; the ratio is recomputed with
libm's log where it is not near 1). Each entry is the sum over samples in ascending order.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from zdl.engine.series import SMALL_LOG_ARGUMENT
from zdl.functions import DELTA
from zdl.gradient import H


@njit(cache=True, nogil=True, error_model="numpy")
def logit_accumulate(z1, e, s, e_t, labels, bias, n_lo, n_hi, u_lo, u_hi, acc, col0):
    """acc[k, col0 + j - u_lo] += l(+) - l(-) for W2[j, k], units u_lo..u_hi-1 (b2 if `bias`: one unit)."""
    units = u_hi - u_lo
    classes = e.shape[1]
    em_p = np.empty(units)
    em_m = np.empty(units)
    ex_p = np.empty(units)
    ex_m = np.empty(units)
    diff = np.empty(units)
    for n in range(n_lo, n_hi):
        for jj in range(units):
            d = H if bias else H * z1[n, u_lo + jj]
            em_p[jj] = d * (1.0 + d * (0.5 + d * (1 / 6 + d * (1 / 24))))
            em_m[jj] = -d * (1.0 - d * (0.5 - d * (1 / 6 - d * (1 / 24))))
            ex_p[jj] = 1.0 + em_p[jj]
            ex_m[jj] = 1.0 + em_m[jj]
        t = labels[n]
        for k in range(classes):
            _class_diffs(s[n], e[n, k], e_t[n], em_p, em_m, ex_p, ex_m, k == t, diff)
            for jj in range(units):
                acc[k, col0 + jj] += diff[jj]


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _class_diffs(s_n, e_nk, e_tn, em_p, em_m, ex_p, ex_m, is_target, out):
    """out[j] = l(+) - l(-) of class k for every unit."""
    for jj in range(len(out)):
        tp = e_tn * ex_p[jj] if is_target else e_tn
        tm = e_tn * ex_m[jj] if is_target else e_tn
        ap = tp / (s_n + e_nk * em_p[jj]) + DELTA
        am = tm / (s_n + e_nk * em_m[jj]) + DELTA
        eps = (am - ap) / ap
        poly = eps * (1.0 - eps * (0.5 - eps * (1 / 3 - eps * (0.25 - eps * (0.2 - eps * (1 / 6))))))
        out[jj] = poly if abs(eps) < SMALL_LOG_ARGUMENT else np.nan  # not near 1: libm's log below
    for jj in range(len(out)):
        if np.isnan(out[jj]):
            tp = e_tn * ex_p[jj] if is_target else e_tn
            tm = e_tn * ex_m[jj] if is_target else e_tn
            out[jj] = math.log((tm / (s_n + e_nk * em_m[jj]) + DELTA) / (tp / (s_n + e_nk * em_p[jj]) + DELTA))
