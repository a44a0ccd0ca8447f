"""The truncated power series of the per-sample loss, written out term by term (degree ORDER = 7).

Straight-line arithmetic on scalars, so that a loop over (sample, unit) elements that calls these
vectorizes with every coefficient in a register (arrays of coefficients, one pass per operation, spent
most of their time moving memory). The statements are the recurrences of `closed_form`, unrolled:

  s_{k+1} = (s_k (zc - z) - sum_{m=1..k-1} s_m s_{k-m}) / (k + 1)     the sigmoid's series, s_1 = z zc
  dm_k    = sum_j d(m-1)_j s_{k-j}                                      (D^m)_k, D = sum_k s_k u^k
  p_k     = sum_m (A_m / m!) (D^m)_k,  q_k = E_t sum_m (w_t^m / m!) (D^m)_k
  y_k     = (q_k - sum_{m=1..k} p_m y_{k-m}) / p_0                      y = Q / P
  l_k     = (y_k - sum_{m=1..k-1} m l_m y_{k-m} / k) / (y_0 + 1e-7)     l = log(y + 1e-7)
"""

from __future__ import annotations

from numba import njit

from zdl.functions import DELTA

#: Degree of the series: the loss's odd coefficients c1, c3, c5 are used, c7 bounds what is left out.
ORDER = 7


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _log_terms(p0, p1, p2, p3, p4, p5, p6, p7, q0, q1, q2, q3, q4, q5, q6, q7):
    """c1, c3, c5, c7 of g = -log(Q / P + 1e-7) from P's and Q's coefficients."""
    ip = 1.0 / p0
    y0 = q0 * ip
    y1 = (q1 - (p1 * y0)) * ip
    y2 = (q2 - (p1 * y1 + p2 * y0)) * ip
    y3 = (q3 - (p1 * y2 + p2 * y1 + p3 * y0)) * ip
    y4 = (q4 - (p1 * y3 + p2 * y2 + p3 * y1 + p4 * y0)) * ip
    y5 = (q5 - (p1 * y4 + p2 * y3 + p3 * y2 + p4 * y1 + p5 * y0)) * ip
    y6 = (q6 - (p1 * y5 + p2 * y4 + p3 * y3 + p4 * y2 + p5 * y1 + p6 * y0)) * ip
    y7 = (q7 - (p1 * y6 + p2 * y5 + p3 * y4 + p4 * y3 + p5 * y2 + p6 * y1 + p7 * y0)) * ip
    iy = 1.0 / (y0 + DELTA)
    l1 = y1 * iy
    l2 = (y2 - (l1 * y1) * 0.5) * iy
    l3 = (y3 - (l1 * y2 + 2.0 * l2 * y1) * 0.3333333333333333) * iy
    l4 = (y4 - (l1 * y3 + 2.0 * l2 * y2 + 3.0 * l3 * y1) * 0.25) * iy
    l5 = (y5 - (l1 * y4 + 2.0 * l2 * y3 + 3.0 * l3 * y2 + 4.0 * l4 * y1) * 0.2) * iy
    l6 = ((y6 - (l1 * y5 + 2.0 * l2 * y4 + 3.0 * l3 * y3 + 4.0 * l4 * y2 + 5.0 * l5 * y1) * 0.16666666666666666) * iy)
    l7 = ((y7 - (l1 * y6 + 2.0 * l2 * y5 + 3.0 * l3 * y4 + 4.0 * l4 * y3 + 5.0 * l5 * y2 + 6.0 * l6 * y1) *
        0.14285714285714285) * iy)
    return -l1, -l3, -l5, -l7


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def hidden_terms(z, zc, wt, s_n, e_tn, m1, m2, m3, m4, m5, m6, m7):
    """c1, c3, c5, c7 of the loss along one hidden unit: z = z1[n, j], zc = 1 - z, wt = W2[j, t],
    s_n = s[n], e_tn = E[n, t], m_k = A_k / k! = sum_c E[n, c] W2[j, c]^k / k!."""
    a = zc - z
    s1 = z * zc
    s2 = (s1 * a) * 0.5
    s3 = (s2 * a - (s1 * s1)) * 0.3333333333333333
    s4 = (s3 * a - (s1 * s2 + s2 * s1)) * 0.25
    s5 = (s4 * a - (s1 * s3 + s2 * s2 + s3 * s1)) * 0.2
    s6 = (s5 * a - (s1 * s4 + s2 * s3 + s3 * s2 + s4 * s1)) * 0.16666666666666666
    s7 = (s6 * a - (s1 * s5 + s2 * s4 + s3 * s3 + s4 * s2 + s5 * s1)) * 0.14285714285714285
    d2_2 = s1 * s1
    d2_3 = s1 * s2 + s2 * s1
    d2_4 = s1 * s3 + s2 * s2 + s3 * s1
    d2_5 = s1 * s4 + s2 * s3 + s3 * s2 + s4 * s1
    d2_6 = s1 * s5 + s2 * s4 + s3 * s3 + s4 * s2 + s5 * s1
    d2_7 = s1 * s6 + s2 * s5 + s3 * s4 + s4 * s3 + s5 * s2 + s6 * s1
    d3_3 = d2_2 * s1
    d3_4 = d2_2 * s2 + d2_3 * s1
    d3_5 = d2_2 * s3 + d2_3 * s2 + d2_4 * s1
    d3_6 = d2_2 * s4 + d2_3 * s3 + d2_4 * s2 + d2_5 * s1
    d3_7 = d2_2 * s5 + d2_3 * s4 + d2_4 * s3 + d2_5 * s2 + d2_6 * s1
    d4_4 = d3_3 * s1
    d4_5 = d3_3 * s2 + d3_4 * s1
    d4_6 = d3_3 * s3 + d3_4 * s2 + d3_5 * s1
    d4_7 = d3_3 * s4 + d3_4 * s3 + d3_5 * s2 + d3_6 * s1
    d5_5 = d4_4 * s1
    d5_6 = d4_4 * s2 + d4_5 * s1
    d5_7 = d4_4 * s3 + d4_5 * s2 + d4_6 * s1
    d6_6 = d5_5 * s1
    d6_7 = d5_5 * s2 + d5_6 * s1
    d7_7 = d6_6 * s1
    f2 = wt * wt * 0.5
    f3 = f2 * wt * 0.3333333333333333
    f4 = f3 * wt * 0.25
    f5 = f4 * wt * 0.2
    f6 = f5 * wt * 0.16666666666666666
    f7 = f6 * wt * 0.14285714285714285
    p1 = m1 * s1
    q1 = e_tn * (wt * s1)
    p2 = m1 * s2 + m2 * d2_2
    q2 = e_tn * (wt * s2 + f2 * d2_2)
    p3 = m1 * s3 + m2 * d2_3 + m3 * d3_3
    q3 = e_tn * (wt * s3 + f2 * d2_3 + f3 * d3_3)
    p4 = m1 * s4 + m2 * d2_4 + m3 * d3_4 + m4 * d4_4
    q4 = e_tn * (wt * s4 + f2 * d2_4 + f3 * d3_4 + f4 * d4_4)
    p5 = m1 * s5 + m2 * d2_5 + m3 * d3_5 + m4 * d4_5 + m5 * d5_5
    q5 = e_tn * (wt * s5 + f2 * d2_5 + f3 * d3_5 + f4 * d4_5 + f5 * d5_5)
    p6 = m1 * s6 + m2 * d2_6 + m3 * d3_6 + m4 * d4_6 + m5 * d5_6 + m6 * d6_6
    q6 = e_tn * (wt * s6 + f2 * d2_6 + f3 * d3_6 + f4 * d4_6 + f5 * d5_6 + f6 * d6_6)
    p7 = m1 * s7 + m2 * d2_7 + m3 * d3_7 + m4 * d4_7 + m5 * d5_7 + m6 * d6_7 + m7 * d7_7
    q7 = e_tn * (wt * s7 + f2 * d2_7 + f3 * d3_7 + f4 * d4_7 + f5 * d5_7 + f6 * d6_7 + f7 * d7_7)
    return _log_terms(s_n, p1, p2, p3, p4, p5, p6, p7, e_tn, q1, q2, q3, q4, q5, q6, q7)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def logit_terms(e_nc, s_n, e_tn, is_target):
    """c1, c3, c5, c7 of the loss along one logit: P = s + E_c (e^u - 1), Q = E_t e^(u [c == t])."""
    p1 = e_nc
    p2 = p1 * 0.5
    p3 = p2 * (1 / 3)
    p4 = p3 * 0.25
    p5 = p4 * 0.2
    p6 = p5 * (1 / 6)
    p7 = p6 * (1 / 7)
    q1 = e_tn if is_target else 0.0
    q2 = q1 * 0.5
    q3 = q2 * (1 / 3)
    q4 = q3 * 0.25
    q5 = q4 * 0.2
    q6 = q5 * (1 / 6)
    q7 = q6 * (1 / 7)
    return _log_terms(s_n, p1, p2, p3, p4, p5, p6, p7, e_tn, q1, q2, q3, q4, q5, q6, q7)
