"""Compiled kernel: the per-sample loss as a power series along one perturbed coordinate, and the
closed-form central differences of W1 and b1 built from it (`closed_form.py`: the derivation and the bound).

Along hidden unit j of sample n (a1[n, j] moved by u), with z = z1[n, j] and w = W2[j, :]:
  sigmoid(a + u) = sum_k s_k u^k,  s_0 = z,  (k + 1) s_{k+1} = [S (1 - S)]_k     (sigmoid' = sigmoid (1 - sigmoid))
  D(u)  = sum_{k>=1} s_k u^k                                                     (the change of z)
  P(u)  = sum_c E[n, c] exp(w_c D) = s + sum_m (A_m / m!) D^m,  A_m = sum_c E[n, c] w_c^m
  Q(u)  = E[n, t] exp(w_t D) = E[n, t] sum_m (w_t^m / m!) D^m                   (the target's term)
  g(u)  = -log(Q / P + 1e-7)                                                     (the book's per-sample loss)
Series division and the logarithm's recurrence give g's coefficients (`_series_terms`, written out term by
term); every series is truncated at degree ORDER. Each element's bits are its own, whatever else a
chunk, a block or a thread holds.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from zdl.engine._hidden_numba import _fix_large, _pair_diffs
from zdl.engine._series_terms import ORDER, hidden_terms
from zdl.gradient import H

#: The first omitted term must stay below this fraction of the unit roundoff of the leading term.
BOUND_FRACTION = 1 / 16
UNIT_ROUNDOFF = 2.0**-53
_LIMIT = BOUND_FRACTION * UNIT_ROUNDOFF


@njit(cache=True, nogil=True, error_model="numpy")
def weight_powers(w2t):
    """wp[m, c, j] = W2[j, c]^m / m! for m = 1..ORDER (wp[0] unused), from W2 transposed (classes, hidden)."""
    wp = np.empty((ORDER + 1,) + w2t.shape)
    wp[1] = w2t
    for m in range(2, ORDER + 1):
        wp[m] = wp[m - 1] * w2t * (1.0 / m)
    return wp


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def within_bound(c1, c7, r):
    """The first omitted term |c7| r^6 is under BOUND_FRACTION of the leading term's roundoff (NaN: no)."""
    r2 = r * r
    return abs(c7) * (r2 * r2 * r2) <= _LIMIT * abs(c1)


@njit(cache=True, nogil=True, error_model="numpy")
def hidden_series(z1, e, s, e_t, labels, w2t, wp, r, n, u_lo, u_hi, mom, coef, ok, at):
    """Sample n's series along units u_lo..u_hi-1: coef[0..3, at + j - u_lo] = c1, c3, c5, c7 and ok as
    `within_bound` for shifts up to r. mom: work, (ORDER + 1, units). Returns how many are past the bound."""
    units = u_hi - u_lo
    for m in range(1, ORDER + 1):  # A_m / m! = sum_c E[n, c] W2[j, c]^m / m!, classes ascending
        mom_m = mom[m]
        for jj in range(units):
            mom_m[jj] = 0.0
    for c in range(e.shape[1]):
        e_nc = e[n, c]
        for m in range(1, ORDER + 1):
            mom_m, wp_mc = mom[m], wp[m, c, u_lo:u_hi]  # views indexed from 0 (see below)
            for jj in range(units):
                mom_m[jj] += e_nc * wp_mc[jj]
    z1_n, wt_n = z1[n, u_lo:u_hi], w2t[labels[n], u_lo:u_hi]  # indexed from 0: no negative-index
    # wraparound in the loops, so that their loads stay consecutive and they vectorize
    s_n, e_tn = s[n], e_t[n]
    m1, m2, m3, m4, m5, m6, m7 = mom[1], mom[2], mom[3], mom[4], mom[5], mom[6], mom[7]
    c1s, c3s, c5s, c7s = coef[0, at : at + units], coef[1, at : at + units], coef[2, at : at + units], \
        coef[3, at : at + units]
    for jj in range(units):  # straight-line arithmetic only: this loop vectorizes
        z = z1_n[jj]
        c1s[jj], c3s[jj], c5s[jj], c7s[jj] = hidden_terms(z, 1.0 - z, wt_n[jj], s_n, e_tn, m1[jj], m2[jj],
                                                          m3[jj], m4[jj], m5[jj], m6[jj], m7[jj])
    marked = 0
    for jj in range(units):
        ok[at + jj] = within_bound(c1s[jj], c7s[jj], r)
        marked += 0 if ok[at + jj] else 1
    return marked


@njit(cache=True, nogil=True, error_model="numpy")
def hidden_coefficients(z1, e, s, e_t, labels, w2t, out):
    """out[k, n, j] = c1, c3, c5, c7 (k = 0..3) of the loss's series along hidden unit j of sample n."""
    hidden = z1.shape[1]
    wp = weight_powers(w2t)
    mom = np.empty((ORDER + 1, hidden))
    ok = np.empty(hidden, np.bool_)
    for n in range(len(s)):
        hidden_series(z1, e, s, e_t, labels, w2t, wp, 0.0, n, 0, hidden, mom, out[:, n], ok, 0)


@njit(cache=True, nogil=True, error_model="numpy")
def closed_hidden_accumulate(x, z1, e, s, e_t, labels, w2, w2t, wp, w2_max, x_max, rows, n_lo, n_hi, u_lo, u_hi,
                             acc):
    """acc[r, j - u_lo] += each non-zero pixel v's quotient term v c1 + v (hv)^2 c3 + v (hv)^4 c5 (row r of
    `rows`; a row equal to input_size is b1, v = 1), or for a (sample, unit) past the bound the evaluated
    kernel's (l(+) - l(-)) / 2h; every entry sums its samples in ascending order.

    The additions go block by block of acc (up to TILE units, BLOCK_ENTRIES in all), each entry still
    summing its samples in ascending order, so that a block stays in cache for all samples."""
    units = u_hi - u_lo
    count = n_hi - n_lo
    coef = np.empty((4, count * units))  # c1, c3, c5, c7 of each (sample, unit), sample-major
    ok = np.empty(count * units, np.bool_)
    mom = np.empty((ORDER + 1, units))
    marked = 0
    for n in range(n_lo, n_hi):
        marked += hidden_series(z1, e, s, e_t, labels, w2t, wp, H * x_max[n], n, u_lo, u_hi, mom, coef, ok,
                                (n - n_lo) * units)
    entry_start, entry_row, entry_value = _nonzero_entries(x, rows, n_lo, n_hi)
    weights = np.empty((len(entry_value), 3))  # v, v (hv)^2, v (hv)^4
    for q in range(len(entry_value)):
        v = entry_value[q]
        hv2 = (H * v) * (H * v)
        weights[q, 0], weights[q, 1], weights[q, 2] = v, v * hv2, v * hv2 * hv2
    reached = np.empty(count, np.int64)  # per sample: its first entry not yet added in this tile
    width = max(1, -(-units // max(1, -(-units // TILE))))  # tiles of equal width, at most TILE
    for t_lo in range(0, units, width):
        t_hi = min(t_lo + width, units)
        reached[:] = entry_start[:count]
        row_block = max(1, BLOCK_ENTRIES // (t_hi - t_lo))
        for block_end in range(row_block, len(rows) + row_block, row_block):  # rows r < block_end
            for n in range(n_lo, n_hi):
                base = (n - n_lo) * units
                q_lo = q_hi = reached[n - n_lo]
                while q_hi < entry_start[n - n_lo + 1] and entry_row[q_hi] < block_end:
                    q_hi += 1
                reached[n - n_lo] = q_hi
                if q_lo == q_hi:
                    continue
                if marked and not ok[base + t_lo : base + t_hi].all():  # rare: see `closed_form`
                    _add_with_fallback(z1, e, s, e_t, labels, w2, w2t, w2_max, n, u_lo + t_lo, u_lo + t_hi,
                                       ok[base + t_lo : base + t_hi], coef[:3, base + t_lo : base + t_hi],
                                       entry_row[q_lo:q_hi], entry_value[q_lo:q_hi], weights[q_lo:q_hi],
                                       acc[:, t_lo:t_hi])
                    continue
                _add_entries(coef[0, base + t_lo : base + t_hi], coef[1, base + t_lo : base + t_hi],
                             coef[2, base + t_lo : base + t_hi], weights, entry_row, q_lo, q_hi, acc, t_lo, t_hi)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _add_entries(c1, c3, c5, weights, entry_row, q_lo, q_hi, acc, t_lo, t_hi):
    """acc[entry_row[q], t_lo:t_hi] += v c1 + v (hv)^2 c3 + v (hv)^4 c5 for one sample's entries q_lo..q_hi-1.

    Four entries (four rows of acc) at a time: each unit's coefficients are loaded once for the four, and the
    loop's fixed cost is spread over four rows (a third less time at the book's 50 units). The rows differ,
    so each entry's value and its order of samples are those of one entry at a time."""
    q = q_lo
    while q + 3 < q_hi:
        a1, b1, d1 = weights[q, 0], weights[q, 1], weights[q, 2]
        a2, b2, d2 = weights[q + 1, 0], weights[q + 1, 1], weights[q + 1, 2]
        a3, b3, d3 = weights[q + 2, 0], weights[q + 2, 1], weights[q + 2, 2]
        a4, b4, d4 = weights[q + 3, 0], weights[q + 3, 1], weights[q + 3, 2]
        row1, row2 = acc[entry_row[q], t_lo:t_hi], acc[entry_row[q + 1], t_lo:t_hi]
        row3, row4 = acc[entry_row[q + 2], t_lo:t_hi], acc[entry_row[q + 3], t_lo:t_hi]
        for jj in range(t_hi - t_lo):
            k1, k3, k5 = c1[jj], c3[jj], c5[jj]
            row1[jj] += a1 * k1 + b1 * k3 + d1 * k5
            row2[jj] += a2 * k1 + b2 * k3 + d2 * k5
            row3[jj] += a3 * k1 + b3 * k3 + d3 * k5
            row4[jj] += a4 * k1 + b4 * k3 + d4 * k5
        q += 4
    while q < q_hi:
        a, b, c = weights[q, 0], weights[q, 1], weights[q, 2]
        row = acc[entry_row[q], t_lo:t_hi]
        for jj in range(t_hi - t_lo):
            row[jj] += a * c1[jj] + b * c3[jj] + c * c5[jj]
        q += 1


#: Hidden units and accumulators updated together: a block of acc of at most TILE units (the units split in
#: tiles of equal width) and as many rows as make BLOCK_ENTRIES (256 KiB) stays in the L2 cache while every
#: sample adds its entries of those rows; wide tiles make each entry's loop long, so that its fixed cost
#: (views, alias checks) is spread thin. Blocks of 32 KiB (L1) cost more in rescanning each sample's entries
#: per block than they saved: on the AMD EPYC VM 256 KiB took 55 to 70% of their time at 784-300-10 and at
#: 784-1024-10 (a chunk of 300 samples), and 70 to 80% at the book's shape.
TILE = 512
BLOCK_ENTRIES = 32768


@njit(cache=True, nogil=True, error_model="numpy")
def _nonzero_entries(x, rows, n_lo, n_hi):
    """Each sample's non-zero pixels among `rows` (rows ascending): starts per sample, row positions, values."""
    input_size = x.shape[1]
    entry_start = np.empty(n_hi - n_lo + 1, np.int64)
    entry_row = np.empty((n_hi - n_lo) * len(rows), np.int64)
    entry_value = np.empty((n_hi - n_lo) * len(rows))
    q = 0
    for n in range(n_lo, n_hi):
        entry_start[n - n_lo] = q
        for r in range(len(rows)):
            v = 1.0 if rows[r] == input_size else x[n, rows[r]]
            entry_row[q], entry_value[q] = r, v  # written always, kept if non-zero: no branch to mispredict
            q += 1 if v != 0.0 else 0
    entry_start[n_hi - n_lo] = q
    return entry_start, entry_row[:q], entry_value[:q]


@njit(cache=True, nogil=True, error_model="numpy")
def _add_with_fallback(z1, e, s, e_t, labels, w2, w2t, w2_max, n, u_lo, u_hi, ok, coef, entry_row, entry_value,
                       weights, acc):
    """Sample n's entries at units u_lo..u_hi-1 added to acc: the closed-form term where `ok`, elsewhere the
    evaluated kernel's (l(+) - l(-)) / 2h, computed as `_hidden_numba` computes it."""
    units = u_hi - u_lo
    z = z1[n, u_lo:u_hi].copy()
    zc = 1.0 - z
    wt = w2t[labels[n], u_lo:u_hi].copy()
    moments = np.empty((4, units))
    _evaluated_moments(e[n], w2t, u_lo, moments)
    term, evaluated = np.empty(units), np.empty(units)
    decay, rise = np.empty(2), np.empty(2)
    for q in range(len(entry_value)):
        v = entry_value[q]
        d = v * H
        decay[0], decay[1], rise[0], rise[1] = math.exp(-d), math.exp(d), -math.expm1(-d), -math.expm1(d)
        if _pair_diffs(decay, rise, s[n], e_t[n], z, zc, moments, wt, w2_max[u_lo:u_hi], evaluated):
            _fix_large(n, u_lo, v, z1, e, e_t, labels, w2, evaluated)
        a, b, c = weights[q, 0], weights[q, 1], weights[q, 2]
        for jj in range(units):
            term[jj] = a * coef[0, jj] + b * coef[1, jj] + c * coef[2, jj] if ok[jj] else evaluated[jj] / (2 * H)
        acc_row = acc[entry_row[q]]
        for jj in range(units):
            acc_row[jj] += term[jj]


@njit(cache=True, nogil=True, error_model="numpy")
def _evaluated_moments(e_n, w2t, u_lo, c):
    """c[p - 1, j] = sum_k e_n[k] W2[j, k]^p / p! for p = 1..4, as the evaluated kernel computes them."""
    units = c.shape[1]
    for p in range(4):
        for jj in range(units):
            c[p, jj] = 0.0
    for k in range(len(e_n)):
        for jj in range(units):
            w = w2t[k, u_lo + jj]
            term = e_n[k] * w
            c[0, jj] += term
            term *= w
            c[1, jj] += term
            term *= w
            c[2, jj] += term
            term *= w
            c[3, jj] += term
    for jj in range(units):
        c[1, jj] *= 0.5
        c[2, jj] *= 1 / 6
        c[3, jj] *= 1 / 24
