"""Compiled kernel: dL/dW2 and dL/db2 in closed form, from the loss's series along each logit (see
`_series_terms` for the series and `closed_form.py` for the derivation and the bound).

W2[j, c] moves logit c of sample n by u = h z1[n, j] (b2[c]: by h). Along logit c,
  P(u) = s + E[n, c] (e^u - 1),   Q(u) = E[n, t] e^(u [c == t]),   g(u) = -log(Q / P + 1e-7),
and z1 lies in [0, 1], so one series per (sample, class) serves every unit, r = h bounding every shift.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from zdl.engine._logits_numba import _class_diffs
from zdl.engine._series_numba import within_bound
from zdl.engine._series_terms import logit_terms
from zdl.gradient import H


@njit(cache=True, nogil=True, error_model="numpy")
def logit_coefficients(e, s, e_t, labels, out):
    """out[k, n, c] = c1, c3, c5, c7 (k = 0..3) of the loss's series along logit c of sample n."""
    for n in range(len(s)):
        for c in range(e.shape[1]):
            out[0, n, c], out[1, n, c], out[2, n, c], out[3, n, c] = logit_terms(e[n, c], s[n], e_t[n],
                                                                                 c == labels[n])


@njit(cache=True, nogil=True, error_model="numpy")
def closed_logit_accumulate(z1, e, s, e_t, labels, bias, n_lo, n_hi, u_lo, u_hi, acc, col0):
    """acc[c, col0 + j - u_lo] += z c1 + z (hz)^2 c3 + z (hz)^4 c5 for W2[j, c] (z = z1[n, j]; b2: z = 1), or
    for a (sample, class) past the bound the evaluated kernel's (l(+) - l(-)) / 2h; samples in order."""
    units = u_hi - u_lo
    em_p, em_m, ex_p, ex_m, diff = np.empty(units), np.empty(units), np.empty(units), np.empty(units), np.empty(units)
    a, b, c_ = np.empty(units), np.empty(units), np.empty(units)
    for n in range(n_lo, n_hi):
        for jj in range(units):
            zz = 1.0 if bias else z1[n, u_lo + jj]
            hz2 = (H * zz) * (H * zz)
            a[jj], b[jj], c_[jj] = zz, zz * hz2, zz * hz2 * hz2
        prepared = False
        for c in range(e.shape[1]):
            c1, c3, c5, c7 = logit_terms(e[n, c], s[n], e_t[n], c == labels[n])
            acc_row = acc[c, col0 : col0 + units]
            if within_bound(c1, c7, H):
                for jj in range(units):
                    acc_row[jj] += a[jj] * c1 + b[jj] * c3 + c_[jj] * c5
                continue
            if not prepared:  # the evaluated kernel's expm1 and exp of each unit's shift (see `_logits_numba`)
                for jj in range(units):
                    d = H * a[jj]
                    em_p[jj] = d * (1.0 + d * (0.5 + d * (1 / 6 + d * (1 / 24))))
                    em_m[jj] = -d * (1.0 - d * (0.5 - d * (1 / 6 - d * (1 / 24))))
                    ex_p[jj] = 1.0 + em_p[jj]
                    ex_m[jj] = 1.0 + em_m[jj]
                prepared = True
            _class_diffs(s[n], e[n, c], e_t[n], em_p, em_m, ex_p, ex_m, c == labels[n], diff)
            for jj in range(units):
                acc_row[jj] += diff[jj] / (2 * H)
