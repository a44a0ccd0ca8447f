"""`numerical` in closed form: the book's central-difference quotient from the loss's power series.

The quotient is the book's, exactly: (L(w + h) - L(w - h)) / 2h with h = 1e-4, the loss the book's
mean of l_n = -log(y_n[t_n] + 1e-7), in float64. What changes is how it is computed.

Perturbing W1[i, j] by +-h moves only the hidden pre-activation a1[n, j], by +-h x[n, i], in each
sample. With g_nj(u) the per-sample loss as a function of that shift (g_nj(0) = l_n), Taylor's theorem
gives, term by term (the even terms cancel in the difference),

    (L(w + h) - L(w - h)) / 2h = (1/N) sum_n sum_{k odd} c_k(n, j) x[n, i]^k h^(k - 1),   c_k = g^(k)(0) / k!

so the whole W1 gradient is (X^T C1 + h^2 (X^3)^T C3 + h^4 (X^5)^T C5 + ...) / N, with Ck[n, j] the
coefficients of the per-sample loss along each hidden unit: C1 is backprop's dL/da1, and
h^2 c3 = (h^2 / 6) g''' is the quotient's truncation error, about 1e-9 of the gradient's scale at
h = 1e-4. b1 is the same with x = 1. W2[j, c] and b2[c] move one logit, by h z1[n, j] (or h), so the
same expansion holds along a logit with z1 in [0, 1] in place of x.

The coefficients come from truncated power-series arithmetic (degree 7, `_series_terms`): the sigmoid's
series from sigmoid' = sigmoid (1 - sigmoid), the softmax's denominator P(u) = sum_c E[n, c]
exp(W2[j, c] D(u)) from the moments A_m = sum_c E[n, c] W2[j, c]^m and the powers of D(u) =
sigmoid(a + u) - sigmoid(a), then y = Q / P by series division and log(y + 1e-7) by the logarithm's
recurrence. That is O(N H C) work per iteration, plus the products above, in place of one loss
evaluation per (sample, distinct pixel value, unit).

The bound. The sum uses c1, c3 and c5; the first term left out is c7 x^7 h^6 per sample and pixel.
With r = h max(1, max_i |x[n, i]|) the largest shift of sample n (every pixel of the sample counts,
whatever rows a block holds, so the decision is the same in every partition), the term relative to the
leading one, c1 x, is at most |c7| r^6 / |c1|. Where

    |c7| r^6 <= BOUND_FRACTION * 2^-53 * |c1|        (BOUND_FRACTION = 1/16)

the omitted term is under a sixteenth of the unit roundoff of the leading term, and the later terms are
smaller still: g is analytic in a disc around 0 whose radius R (the sigmoid's poles at +-i pi, the zeros
of P and of Q / P + 1e-7) is far beyond r, and the terms fall by about (r / R)^2 each. Where the test
fails (unnormalized pixels, large weights, a c1 that vanishes), that (sample, unit), or (sample, class)
for W2 and b2, is computed by the evaluated kernel (`_hidden_numba`, `_logits_numba`) as before; a NaN
or an infinity fails the test too. With normalized pixels r = 1e-4 and r^6 = 1e-24, so the test fails
only for |c7 / c1| above about 7e6: trained nets of the book's size never go there.

Every entry is the sum over its samples, in ascending order, of the same elementwise terms whatever block,
chunk or thread holds it, so the gradient is bit-identical for any partition, as the evaluated kernels'.
It agrees with the evaluated kernel to about 1e-12 (both are the exact quotient up to rounding; the
evaluated kernel's rounding, about 1e-16 / 2h per sample, is the larger).

`quotient_terms` shows the lesson of the chapter with these numbers: the numerical gradient is the
analytic one plus (h^2 / 6) g''' plus terms below rounding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from zdl.engine.inputs import Params, check_batch, check_params
from zdl.engine.kernel import numba_importable
from zdl.gradient import H

__all__ = ["QuotientTerms", "past_bound", "quotient_terms", "terms_table"]


@dataclass(frozen=True)
class QuotientTerms:
    """One parameter's numerical gradient and its expansion, arrays of the parameter's shape.

    numerical: the book's quotient (the evaluated kernel, an evaluation independent of the series);
    analytic: the derivative itself (the c1 term, what backprop computes); third_order: (h^2 / 6) g''';
    fifth_order: (h^4 / 120) g^(5); rest: numerical - analytic - third_order (the fifth-order term and
    rounding)."""

    numerical: NDArray[np.float64]
    analytic: NDArray[np.float64]
    third_order: NDArray[np.float64]
    fifth_order: NDArray[np.float64]
    rest: NDArray[np.float64]


def _series(params: Params, x: NDArray[np.float64], labels: NDArray[np.intp]) -> tuple[Any, ...]:
    """The forward pass and the coefficients c1, c3, c5, c7: (4, N, hidden) and (4, N, classes)."""
    if not numba_importable():
        raise ValueError("quotient_terms needs the compiled kernels, and numba cannot be imported")
    from zdl.engine._series_logits_numba import logit_coefficients
    from zdl.engine._series_numba import hidden_coefficients
    from zdl.engine.budget import no_check
    from zdl.engine.compiled import forward

    fwd = forward(params, x, labels, 1, no_check)
    hidden = np.empty((4, *fwd.z1.shape))
    logits = np.empty((4, *fwd.e.shape))
    hidden_coefficients(fwd.z1, fwd.e, fwd.s, fwd.e_t, fwd.labels, np.ascontiguousarray(params["W2"].T), hidden)
    logit_coefficients(fwd.e, fwd.s, fwd.e_t, fwd.labels, logits)
    return fwd, hidden, logits


def _params_of(net_or_params: Any) -> Mapping[str, ArrayLike]:
    return net_or_params.params if hasattr(net_or_params, "params") else net_or_params


def quotient_terms(net_or_params: Any, x: ArrayLike, t: ArrayLike) -> dict[str, QuotientTerms]:
    """numerical = analytic + (h^2 / 6) g''' + ... for each of W1, b1, W2, b2, at the book's h = 1e-4.

    net_or_params: a TwoLayerNet or its params {W1, b1, W2, b2}; x: (N, input); t: labels or one-hot."""
    from zdl.engine.compute import gradient

    params = check_params(_params_of(net_or_params))
    x_arr, labels = check_batch(params, x, t)
    fwd, hidden, logits = _series(params, x_arr, labels)
    batch = len(labels)
    inputs = {"W1": x_arr, "b1": np.ones((batch, 1)), "W2": fwd.z1, "b2": np.ones((batch, 1))}
    numerical = gradient(params, x_arr, labels, "numerical", kernel="numba")
    terms = {}
    for name, value in inputs.items():
        coef = hidden if name in ("W1", "b1") else logits
        shape = params[name].shape
        order = [(value ** (2 * p + 1)).T @ coef[p] * H ** (2 * p) / batch for p in range(3)]
        analytic, third, fifth = (term.reshape(shape) for term in order)
        terms[name] = QuotientTerms(numerical[name], analytic, third, fifth, numerical[name] - analytic - third)
    return terms


def terms_table(terms: Mapping[str, QuotientTerms]) -> str:
    """The largest magnitude of each term per parameter, as a Markdown table."""
    columns = ("numerical", "analytic", "third_order", "fifth_order", "rest")
    header = "| parameter | " + " | ".join(f"max abs {c}" for c in columns) + " |"
    lines = [header, "|---" * (len(columns) + 1) + "|"]
    for name, term in terms.items():
        cells = " | ".join(f"{np.abs(getattr(term, c)).max():.3e}" for c in columns)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


def past_bound(net_or_params: Any, x: ArrayLike, t: ArrayLike) -> dict[str, NDArray[np.bool_]]:
    """Where the closed form hands over to the evaluated kernel: "hidden" (N, hidden) for W1 and b1,
    "logits" (N, classes) for W2 and b2; True where the bound of the module doc is not met."""
    from zdl.engine._series_numba import BOUND_FRACTION, UNIT_ROUNDOFF

    params = check_params(_params_of(net_or_params))
    x_arr, labels = check_batch(params, x, t)
    _, hidden, logits = _series(params, x_arr, labels)
    limit = BOUND_FRACTION * UNIT_ROUNDOFF
    r_hidden = (H * np.maximum(np.abs(x_arr).max(axis=1), 1.0))[:, None]
    masks = {}
    for name, coef, r in (("hidden", hidden, r_hidden), ("logits", logits, H)):
        r2 = r * r
        with np.errstate(invalid="ignore", over="ignore"):
            masks[name] = ~(np.abs(coef[3]) * (r2 * r2 * r2) <= limit * np.abs(coef[0]))
    return masks
