"""zdl.gradient: the book's numbers (section 4.3, 4.4), exact restoration, and analytic derivatives."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zdl.gradient import gradient_descent, numerical_diff, numerical_gradient


def function_1(x):
    """The book's 0.01x^2 + 0.1x (derivative 0.02x + 0.1)."""
    return 0.01 * x**2 + 0.1 * x


def function_2(x):
    """The book's x0^2 + x1^2 (gradient 2x)."""
    return np.sum(x**2)


# --- numerical_diff --------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("f", "x", "book", "exact"),
    [
        (function_1, 5.0, 0.1999999999990898, 0.2),
        (function_1, 10.0, 0.2999999999986347, 0.3),
        (lambda x0: x0 * x0 + 4.0**2, 3.0, 6.00000000000378, 6.0),  # partial derivative wrt x0 at (3, 4)
        (lambda x1: 3.0**2 + x1 * x1, 4.0, 7.999999999999119, 8.0),  # wrt x1
    ],
)
def test_numerical_diff_book_examples(f, x, book, exact):
    d = numerical_diff(f, x)
    assert d == pytest.approx(book, rel=1e-12)
    assert abs(d - exact) <= 1e-9


@pytest.mark.parametrize(
    ("f", "df", "x"), [(math.sin, math.cos, 1.0), (math.exp, math.exp, 0.5), (math.log, lambda x: 1 / x, 2.0)]
)
def test_numerical_diff_is_a_central_difference(f, df, x):
    # Central differences are accurate to O(h^2) = 1e-8 (a forward difference would be off by ~1e-4).
    assert numerical_diff(f, x) == pytest.approx(df(x), abs=1e-8)


def test_numerical_diff_uses_h():
    assert numerical_diff(lambda x: x**3, 1.0, h=0.1) == pytest.approx(3.0 + 0.1**2, rel=1e-12)


# --- numerical_gradient ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("point", "expected"), [((3.0, 4.0), (6.0, 8.0)), ((0.0, 2.0), (0.0, 4.0)), ((3.0, 0.0), (6.0, 0.0))]
)
def test_numerical_gradient_book_examples(point, expected):
    np.testing.assert_allclose(numerical_gradient(function_2, np.array(point)), expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 4), (1, 1, 6)])
def test_numerical_gradient_any_shape(shape):
    """A weighted sum of squares sum(c * x^2): gradient 2cx, so every entry must land at its own index."""
    rng = np.random.default_rng(len(shape))
    c, x = rng.uniform(0.5, 2.0, shape), rng.normal(size=shape)
    grad = numerical_gradient(lambda w: np.sum(c * w**2), x)
    assert grad.shape == x.shape
    np.testing.assert_allclose(grad, 2 * c * x, rtol=0, atol=1e-9)


def test_numerical_gradient_restores_every_entry_bit_for_bit():
    # Values for which x + h - h != x in float64: naive restoration would drift.
    x = np.random.default_rng(0).normal(size=(4, 5)) * 1e3 + 1 / 3
    original = x.copy()
    seen = []

    def f(w):
        changed = np.flatnonzero(w != original)
        seen.append(changed.tolist())
        return float(np.sum(np.sin(w)))

    numerical_gradient(f, x)
    assert x.tobytes() == original.tobytes()
    assert seen == [[i] for i in range(x.size) for _ in range(2)]  # one entry perturbed per call, in order


def test_numerical_gradient_float32():
    x = np.array([1.5, -2.0], dtype=np.float32)
    before = x.copy()
    grad = numerical_gradient(lambda w: float(np.sum(w.astype(np.float64) ** 2)), x)
    np.testing.assert_array_equal(x, before)
    # w + h rounds to float32 (ulp 1.2e-7 at 1.5, 2.4e-7 at 2): the step taken is not h, up to 1.2e-3 relative
    # (4.3e-4 measured).
    np.testing.assert_allclose(grad, [3.0, -4.0], rtol=1.2e-3)


@pytest.mark.parametrize("x", [np.array([3, 4]), np.array([[1, 2]], dtype=np.int32), [3.0, 4.0], 3.0])
def test_numerical_gradient_rejects_non_float_arrays(x):
    with pytest.raises(TypeError, match="floating-point"):
        numerical_gradient(function_2, x)


# --- gradient_descent ------------------------------------------------------------------------------------

def test_gradient_descent_book_run():
    init = np.array([-3.0, 4.0])
    x, history = gradient_descent(function_2, init, lr=0.1, step_num=100)
    # Each step multiplies x by (1 - 2 * lr) = 0.8; the book prints [-6.11110793e-10, 8.14814391e-10].
    # The central difference of x^2 is exactly 2x but for rounding of (x+h)^2 - (x-h)^2: 2.9e-12 relative
    # measured after 100 steps.
    np.testing.assert_allclose(x, 0.8**100 * init, rtol=1e-11)
    np.testing.assert_allclose(x, [-6.11110793e-10, 8.14814391e-10], rtol=1e-8)
    assert history.shape == (100, 2)
    np.testing.assert_array_equal(history[0], init)
    np.testing.assert_allclose(history, 0.8 ** np.arange(100)[:, None] * init, rtol=1e-11)
    np.testing.assert_array_equal(init, [-3.0, 4.0])  # the caller's start point is not moved


def test_gradient_descent_learning_rate_too_large_diverges():
    """Each step multiplies x by -19 until x is so large that x + h == x and the numerical gradient is 0: the
    point where that happens, and so the result, is the book's to the 9 digits it prints."""
    x, _ = gradient_descent(function_2, np.array([-3.0, 4.0]), lr=10.0, step_num=100)
    np.testing.assert_allclose(x, [-2.58983747e13, -1.29524862e12], rtol=5e-9)


def test_gradient_descent_learning_rate_too_small_barely_moves():
    init = np.array([-3.0, 4.0])
    x, _ = gradient_descent(function_2, init, lr=1e-10, step_num=100)
    np.testing.assert_allclose(x, [-2.99999994, 3.99999992], rtol=1e-8)  # the book's numbers
    assert np.all(np.abs(x - init) < 1e-6)


def test_gradient_descent_history_for_matrices():
    x, history = gradient_descent(function_2, [[1.0, -2.0], [0.5, 4.0]], lr=0.25, step_num=3)
    assert history.shape == (3, 2, 2)
    np.testing.assert_allclose(x, 0.5**3 * np.array([[1.0, -2.0], [0.5, 4.0]]), rtol=3e-11)  # 7.4e-12 measured
