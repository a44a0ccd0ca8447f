"""Where the engine replaces exp, expm1 and log by short polynomials, and why that is exact to rounding.

The perturbations are tiny: h = 1e-4 moves an exponent u = dz * W2[j, k] by about 1e-6 and a loss ratio
by about 1e-6. For such arguments a few terms of the Taylor series agree with the function to far below
float64 rounding, and a polynomial costs a few multiply-adds where libm's exp and log cost tens of
nanoseconds and do not vectorize. Each polynomial is used only below its threshold; above it the engine
calls the function itself. The thresholds are decided per element, from that element's values alone.
"""

from __future__ import annotations

#: Below this |u|, exp(u) = 1 + u + u^2/2 + u^3/6 + u^4/24 to within |u|^5/120 * e^|u| < 8.4e-18 of a
#: number near 1, under a tenth of its rounding (1.1e-16). The softmax denominator after hidden unit j
#: moves by dz, sum_k E[k] exp(dz W2[j, k]), is then s + dz A1 + dz^2 A2/2 + dz^3 A3/6 + dz^4 A4/24 with
#: the moments A_p = sum_k E[k] W2[j, k]^p, to within s * 8.4e-18 whenever |dz| max_k |W2[j, k]| < this.
SMALL_EXPONENT = 1e-3

#: At most this |u| (h itself: the logit moves by h * z1 with 0 <= z1 <= 1, or by h), expm1(u) =
#: u (1 + u/2 + u^2/6 + u^3/24) to a relative |u|^4/120 * e^|u| < 8.4e-19, far below rounding (1.1e-16).
SMALL_EXPM1 = 1e-4

#: Below this |eps|, log(1 + eps) = eps - eps^2/2 + ... - eps^6/6 to within |eps|^7/7 (alternating
#: series), a relative error |eps|^6/7 < 1.5e-19 of the result, far below its rounding. The loss
#: difference l(+h) - l(-h) = log((a- + 1e-7) / (a+ + 1e-7)) is log(1 + eps) with eps the ratio minus one,
#: computed as (a- - a+) / (a+ + 1e-7) without rounding the ratio first.
SMALL_LOG_ARGUMENT = 1e-3
