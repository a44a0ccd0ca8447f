"""Compiled kernel: dL/dW1 and dL/db1 by the book's central differences, per (sample, value) pair (see
`compiled.py` for the wrapper and `incremental.py` for the NumPy reference of the same arithmetic).

For sample n, pixel value v and hidden unit j, with d = v h and z = z1[n, j]:
  dz(+-)  = sigmoid(a + d) - z = z (1 - z) (1 - e^-+d) / (z + (1 - z) e^-+d)      (exact identity)
  s'(+-)  = sum_k E[n, k] exp(dz W2[j, k]) = s + dz A1 + dz^2 A2/2 + dz^3 A3/6 + dz^4 A4/24  (`series`)
  a(+-)   = E[n, t] exp(dz W2[j, t]) / s' + 1e-7                                  (y_t plus the book's 1e-7)
  l(+) - l(-) = log(a- / a+) = log1p((a- - a+) / a+)                               (`series`)
Where a polynomial's threshold is passed (large weights, unnormalized pixels) the element is recomputed
with libm's exp and log, one class at a time (`_exact_diff`). Each W1 entry is the sum over its samples,
in ascending order, of the diff of its (sample, value) pair; a pixel index equal to input_size stands
for the bias b1 (a pixel of value 1 in every sample).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from zdl.engine.series import SMALL_EXPONENT, SMALL_LOG_ARGUMENT
from zdl.functions import DELTA
from zdl.gradient import H

_HASH = -7046029254386353131  # 0x9E3779B97F4A7C15 as int64: Fibonacci hashing of the value's bits


@njit(cache=True, nogil=True, error_model="numpy")
def distinct_pairs(x, xbits, rows, n_lo, n_hi, value, pair_start, pair_value, entry_start, entry_row, entry_pair):
    """For samples n_lo..n_hi-1 and the pixels `rows`: the distinct non-zero values (`value`, returns how
    many), each sample's distinct values as pairs (pair_value: index into `value`; pair_start per sample,
    relative to n_lo), and each non-zero pixel as an entry (its position in `rows`, its pair)."""
    input_size = x.shape[1]
    size = 4096  # hash table of the values' bits; doubled whenever it is half full
    table_id = np.full(size, -1, np.int64)
    value_bits = np.empty(len(value), np.int64)
    last_sample = np.empty(len(value), np.int64)
    pair_of_value = np.empty(len(value), np.int64)
    one_bits = np.array([1.0]).view(np.int64)[0]
    values = pairs = entries = 0
    for n in range(n_lo, n_hi):
        pair_start[n - n_lo] = pairs
        entry_start[n - n_lo] = entries
        for r in range(len(rows)):
            i = rows[r]
            if i == input_size:
                v, bits = 1.0, one_bits
            else:
                v, bits = x[n, i], xbits[n, i]
            if v == 0.0:
                continue
            slot = _find_slot(table_id, value_bits, bits)
            if table_id[slot] < 0:
                if 2 * (values + 1) > size:
                    size *= 2
                    table_id = _rehash(value_bits, values, size)
                    slot = _find_slot(table_id, value_bits, bits)
                table_id[slot] = values
                value_bits[values] = bits
                value[values] = v
                last_sample[values] = -1
                values += 1
            vid = table_id[slot]
            if last_sample[vid] != n:
                last_sample[vid] = n
                pair_of_value[vid] = pairs
                pair_value[pairs] = vid
                pairs += 1
            entry_row[entries] = r
            entry_pair[entries] = pair_of_value[vid]
            entries += 1
    pair_start[n_hi - n_lo] = pairs
    entry_start[n_hi - n_lo] = entries
    return values


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _find_slot(table_id, value_bits, bits):
    """The slot holding `bits`, or the empty slot where it goes (linear probing; the table is never full)."""
    mask = len(table_id) - 1
    slot = ((bits * _HASH) >> 40) & mask
    while table_id[slot] >= 0 and value_bits[table_id[slot]] != bits:
        slot = (slot + 1) & mask
    return slot


@njit(cache=True, nogil=True, error_model="numpy")
def _rehash(value_bits, values, size):
    """A table of `size` slots holding the first `values` values."""
    table_id = np.full(size, -1, np.int64)
    for vid in range(values):
        table_id[_find_slot(table_id, value_bits, value_bits[vid])] = vid
    return table_id


@njit(cache=True, nogil=True, error_model="numpy")
def hidden_accumulate(z1, e, s, e_t, labels, w2, w2t, w2_max, n_lo, n_hi, value, n_values, pair_start, pair_value,
                      entry_start, entry_row, entry_pair, u_lo, u_hi, acc, col0):
    """acc[r, col0 + j - u_lo] += l(+) - l(-) of each non-zero pixel's pair, units u_lo..u_hi-1, samples in order.

    w2t is W2 transposed (classes, hidden), contiguous, for the moments A_p[j] = sum_k E[k] W2[j, k]^p.
    """
    units = u_hi - u_lo
    # e^-+d and -expm1(-+d) of each distinct value's shift d = v h: once per value, not per pair
    decay = np.empty((n_values, 2))
    rise = np.empty((n_values, 2))
    for q in range(n_values):
        d = value[q] * H
        decay[q, 0], rise[q, 0] = math.exp(-d), -math.expm1(-d)
        decay[q, 1], rise[q, 1] = math.exp(d), -math.expm1(d)
    z = np.empty(units)
    zc = np.empty(units)
    c = np.empty((4, units))
    wt = np.empty(units)
    w_max = w2_max[u_lo:u_hi]
    most = 0
    for n in range(n_lo, n_hi):
        most = max(most, pair_start[n - n_lo + 1] - pair_start[n - n_lo])
    diff = np.empty((max(most, 1), units))
    for n in range(n_lo, n_hi):
        _moments(e[n], w2t, u_lo, c)
        t = labels[n]
        for jj in range(units):
            z[jj] = z1[n, u_lo + jj]
            zc[jj] = 1.0 - z1[n, u_lo + jj]
            wt[jj] = w2t[t, u_lo + jj]
        first = pair_start[n - n_lo]
        for q in range(first, pair_start[n - n_lo + 1]):
            vid = pair_value[q]
            if _pair_diffs(decay[vid], rise[vid], s[n], e_t[n], z, zc, c, wt, w_max, diff[q - first]):
                _fix_large(n, u_lo, value[vid], z1, e, e_t, labels, w2, diff[q - first])
        for p in range(entry_start[n - n_lo], entry_start[n - n_lo + 1]):
            # one-dimensional views: the loop below is vectorized over them, which it was not as acc[r, col0 + jj]
            # (the additions and their order are the same; Fashion 784-300-10's W1 took a third longer)
            acc_row = acc[entry_row[p], col0 : col0 + units]
            diff_row = diff[entry_pair[p] - first]
            for jj in range(units):
                acc_row[jj] += diff_row[jj]


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _moments(e_n, w2t, u_lo, c):
    """c[p - 1, j] = sum_k e_n[k] W2[j, k]^p / p! for p = 1..4, summed over k in ascending order."""
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


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _pair_diffs(decay, rise, s_n, e_tn, z, zc, c, wt, w_max, out):
    """out[j] = l(+) - l(-) for every unit by the polynomials; NaN marks an element past a threshold.

    Returns how many elements it marked."""
    dec_p, em_p, dec_m, em_m = decay[0], rise[0], decay[1], rise[1]
    c1, c2, c3, c4 = c[0], c[1], c[2], c[3]
    marked = 0
    for jj in range(len(out)):
        # dz(+-) = z (1 - z) (1 - e^-+d) / D(+-) with D(+-) = z + (1 - z) e^-+d: one division for both signs
        dp = z[jj] + zc[jj] * dec_p
        dm = z[jj] + zc[jj] * dec_m
        both = z[jj] * zc[jj] / (dp * dm)
        dzp = both * dm * em_p
        dzm = both * dp * em_m
        sp = s_n + dzp * (c1[jj] + dzp * (c2[jj] + dzp * (c3[jj] + dzp * c4[jj])))
        sm = s_n + dzm * (c1[jj] + dzm * (c2[jj] + dzm * (c3[jj] + dzm * c4[jj])))
        up = dzp * wt[jj]
        um = dzm * wt[jj]
        pp = 1.0 + up * (1.0 + up * (0.5 + up * (1 / 6 + up * (1 / 24))))
        pm = 1.0 + um * (1.0 + um * (0.5 + um * (1 / 6 + um * (1 / 24))))
        # a(+-) = E_t p(+-) / s(+-) + 1e-7 = (E_t p(+-) + 1e-7 s(+-)) / s(+-), so eps = a-/a+ - 1 is
        # (E_t pm sp - E_t pp sm) / ((E_t pp + 1e-7 sp) sm): one division instead of three (divisions are
        # much of this loop's time: Fashion 784-300-10's W1 takes 11% less)
        top_p = e_tn * pp
        top_m = e_tn * pm
        eps = (top_m * sp - top_p * sm) / ((top_p + DELTA * sp) * sm)
        poly = eps * (1.0 - eps * (0.5 - eps * (1 / 3 - eps * (0.25 - eps * (0.2 - eps * (1 / 6))))))
        small = max(abs(dzp), abs(dzm)) * w_max[jj] < SMALL_EXPONENT and abs(eps) < SMALL_LOG_ARGUMENT
        out[jj] = poly if small else np.nan
        marked += 0 if small else 1
    return marked


@njit(cache=True, nogil=True, error_model="numpy")
def _fix_large(n, u_lo, v, z1, e, e_t, labels, w2, out):
    """Recompute with libm the elements `_pair_diffs` marked (NaN); a NaN that libm gives stays."""
    for jj in range(len(out)):
        if np.isnan(out[jj]):
            out[jj] = _exact_diff(n, u_lo + jj, v, z1, e, e_t, labels, w2)


@njit(cache=True, nogil=True, error_model="numpy")
def _exact_diff(n, j, v, z1, e, e_t, labels, w2):
    """l(+) - l(-) for one (sample, value, unit) with exp per class and log of the ratio."""
    z = z1[n, j]
    zc = 1.0 - z
    a = np.empty(2)
    for side in range(2):
        d = v * H if side == 0 else -v * H
        dz = z / (z + zc * math.exp(-d)) * zc * -math.expm1(-d)
        total = 0.0
        for k in range(w2.shape[1]):
            total += e[n, k] * math.exp(dz * w2[j, k])
        a[side] = e_t[n] * math.exp(dz * w2[j, labels[n]]) / total + DELTA
    eps = (a[1] - a[0]) / a[0]
    if abs(eps) < SMALL_LOG_ARGUMENT:
        return eps * (1.0 - eps * (0.5 - eps * (1 / 3 - eps * (0.25 - eps * (0.2 - eps * (1 / 6))))))
    return math.log(a[1] / a[0])
