"""The closed form: its terms against independent computations, and its bound at the threshold.

The analytic term is checked against backprop, the truncation term against the evaluated kernel's
quotient minus backprop, and the route on both sides of the bound against `numerical-reference`.
"""

from __future__ import annotations

import numpy as np
import pytest

from zdl.engine import gradient, past_bound, quotient_terms, terms_table
from zdl.nets import TwoLayerNet

TOLERANCE = 1e-9
KERNEL_GAP = 1e-11


@pytest.fixture(scope="module")
def book_batch(mnist_small):
    """The book's net (784-50-10, std 0.01) and a real batch of 100 digits."""
    (x_train, t_train), _ = mnist_small
    rng = np.random.default_rng(7)
    mask = rng.choice(len(x_train), 100, replace=False)
    return TwoLayerNet(784, 50, 10, seed=7), x_train[mask].astype(np.float64), t_train[mask]


def test_the_analytic_term_is_backprop(book_batch):
    net, x, t = book_batch
    terms = quotient_terms(net, x, t)
    backprop = gradient(net.params, x, t, "backprop")
    for name, term in terms.items():
        scale = np.abs(backprop[name]).max()
        np.testing.assert_allclose(term.analytic, backprop[name], rtol=0, atol=1e-12 * scale, err_msg=name)


def test_numerical_is_analytic_plus_the_third_order_term(book_batch):
    """The quotient minus the derivative is the (h^2/6) g''' term, to rounding. On the book's fresh net
    that term is about 1e-10 on W2 and b2, far above the rest; on W1 (behind W2's 0.01 weights) it is
    below 1e-12, near the evaluated kernel's own rounding."""
    net, x, t = book_batch
    terms = quotient_terms(net, x, t)
    backprop = gradient(net.params, x, t, "backprop")
    for name, term in terms.items():
        gap = term.numerical - backprop[name]  # evaluated kernel minus backprop: independent of the series
        np.testing.assert_allclose(term.third_order, gap, rtol=0, atol=2e-12, err_msg=name)
        if name in ("W2", "b2"):
            assert np.abs(term.third_order).max() > 100 * np.abs(term.rest).max(), name
        assert np.abs(term.fifth_order).max() < 1e-15, name
    table = terms_table(terms)
    assert table.count("\n") == 5 and "| W1 |" in table and "max abs third_order" in table


def test_one_hot_targets_give_the_same_terms(book_batch):
    net, x, t = book_batch
    by_label, by_one_hot = quotient_terms(net.params, x, t), quotient_terms(net.params, x, np.eye(10)[t])
    for name in by_label:
        np.testing.assert_array_equal(by_label[name].third_order, by_one_hot[name].third_order)


def _edge_case(seed: int = 5):
    """A small net whose pixel 0 feeds no hidden unit (W1 row 0 is zero): that pixel's value moves only
    sample 0's largest shift r, not its series, so the bound can be crossed by that value alone."""
    rng = np.random.default_rng(seed)
    net = TwoLayerNet(12, 6, 10, weight_init_std=1.5, seed=seed)
    net.params["W1"][0] = 0.0
    net.params["b1"] = rng.standard_normal(6)
    x = np.where(rng.random((4, 12)) < 0.6, rng.random((4, 12)), 0.0)
    return net, x, rng.integers(0, 10, 4)


def _with_pixel(x: np.ndarray, value: float) -> np.ndarray:
    moved = x.copy()
    moved[0, 0] = value
    return moved


def _threshold(net, x, t) -> tuple[float, int]:
    """The pixel value where the first (sample 0, unit) crosses the bound, found by bisection."""
    lo, hi = 1.0, 1e6
    assert not past_bound(net, _with_pixel(x, lo), t)["hidden"][0].any()
    assert past_bound(net, _with_pixel(x, hi), t)["hidden"][0].all()
    for _ in range(200):
        mid = (lo + hi) / 2
        if past_bound(net, _with_pixel(x, mid), t)["hidden"][0].any():
            hi = mid
        else:
            lo = mid
        if hi - lo <= 1e-12 * hi:
            break
    unit = int(np.flatnonzero(past_bound(net, _with_pixel(x, hi), t)["hidden"][0])[0])
    return (lo + hi) / 2, unit


@pytest.mark.parametrize("side", [-1, 1], ids=["below", "above"])
def test_agrees_on_both_sides_of_the_bound(side):
    net, x, t = _edge_case()
    value, unit = _threshold(net, x, t)
    moved = _with_pixel(x, value * (1 + side * 1e-9))
    mask = past_bound(net, moved, t)["hidden"]
    assert mask[0, unit] == (side > 0)
    assert not mask[1:].any()  # the other samples keep their series: the decision is per (sample, unit)
    closed = gradient(net.params, moved, t, kernel="closed-form")
    evaluated = gradient(net.params, moved, t, kernel="numba")
    reference = gradient(net.params, moved, t, "numerical-reference")
    for name in closed:
        np.testing.assert_allclose(closed[name], reference[name], rtol=0, atol=TOLERANCE, err_msg=name)
        np.testing.assert_allclose(closed[name], evaluated[name], rtol=0, atol=KERNEL_GAP, err_msg=name)


def test_unnormalized_pixels_go_to_the_evaluated_kernel(mnist_small):
    """Pixels of 0..255: shifts of 0.0255, where the series' omitted terms exceed rounding."""
    (x_train, t_train), _ = mnist_small
    x, t = x_train[:8].astype(np.float64) * 255, t_train[:8]
    net = TwoLayerNet(784, 16, 10, seed=3)
    assert past_bound(net, x, t)["hidden"].mean() > 0.5
    assert not past_bound(net, x / 255, t)["hidden"].any()
    closed = gradient(net.params, x, t, kernel="closed-form")
    reference = gradient(net.params, x, t, "numerical-reference")
    for name in closed:
        np.testing.assert_allclose(closed[name], reference[name], rtol=0, atol=TOLERANCE, err_msg=name)


def test_nan_coefficients_fail_the_bound():
    """Overflowing weights make the series NaN: those (sample, unit) pairs are evaluated instead."""
    net, x, t = _edge_case()
    net.params["W2"][:] = 1e60
    assert past_bound(net, x, t)["hidden"].all()
    closed = gradient(net.params, x, t, kernel="closed-form")
    evaluated = gradient(net.params, x, t, kernel="numba")
    for name in closed:
        np.testing.assert_array_equal(np.isnan(closed[name]), np.isnan(evaluated[name]), err_msg=name)
