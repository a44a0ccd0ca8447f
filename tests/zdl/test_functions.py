"""zdl.functions against the book's printed numbers and independent formulas written here."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zdl.functions import cross_entropy_error, sigmoid, sigmoid_grad, softmax, sum_squared_error

# The book's example (section 4.2.1): the network says "2" with probability 0.6.
BOOK_Y = [0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0]
BOOK_Y_WRONG = [0.1, 0.05, 0.1, 0.0, 0.05, 0.1, 0.0, 0.6, 0.0, 0.0]  # most probable: 7
BOOK_T = [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]


def ref_softmax(a: np.ndarray) -> np.ndarray:
    """exp(a - logsumexp(a)) row by row, logsumexp by pairwise logaddexp (no max-subtraction)."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    rows = [np.exp(row - np.logaddexp.reduce(row)) for row in a]
    return np.array(rows)


def ref_cross_entropy(y: np.ndarray, labels: np.ndarray) -> float:
    """The book's formula, one sample at a time with math.log."""
    y = np.atleast_2d(y)
    pairs = zip(y, np.atleast_1d(labels), strict=True)
    return -math.fsum(math.log(row[label] + 1e-7) for row, label in pairs) / len(y)


def random_probabilities(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    p = rng.random((n, c)) ** 3
    return p / p.sum(axis=1, keepdims=True)


# --- the book's numbers ----------------------------------------------------------------------------------

PRINTED_8 = 5e-9  # half a unit in the last of the 8 printed digits
PRINTED_17 = 1e-15  # printed with repr: all digits

@pytest.mark.parametrize(
    ("fn", "args", "expected"),
    [
        (softmax, ([0.3, 2.9, 4.0],), [0.01821127, 0.24519181, 0.73659691]),
        (softmax, ([1010, 1000, 990],), [9.99954600e-01, 4.53978686e-05, 2.06106005e-09]),  # overflow example
        (sigmoid, ([-1.0, 1.0, 2.0],), [0.26894142, 0.73105858, 0.88079708]),
        (sum_squared_error, (BOOK_Y, BOOK_T), 0.097500000000000031),
        (sum_squared_error, (BOOK_Y_WRONG, BOOK_T), 0.59750000000000003),
        (cross_entropy_error, (BOOK_Y, BOOK_T), 0.51082545709933802),
        (cross_entropy_error, (BOOK_Y_WRONG, BOOK_T), 2.3025840929945458),
        (cross_entropy_error, (BOOK_Y, 2), 0.51082545709933802),  # label index instead of one-hot
        (cross_entropy_error, (BOOK_Y_WRONG, 2), 2.3025840929945458),
    ],
)
def test_book_numbers(fn, args, expected):
    atol = PRINTED_8 if isinstance(expected, list) else 0.0
    np.testing.assert_allclose(fn(*args), expected, rtol=PRINTED_17, atol=atol)


# --- independent formulas on random inputs ---------------------------------------------------------------

@pytest.mark.parametrize("shape", [(7,), (1, 5), (20, 10), (3, 1)])
def test_softmax_matches_logsumexp_form(shape):
    a = np.random.default_rng(0).normal(scale=5.0, size=shape)
    y = softmax(a)
    assert y.shape == shape
    np.testing.assert_allclose(y, ref_softmax(a).reshape(shape), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-12)


def test_softmax_batch_is_rowwise():
    a = np.random.default_rng(1).normal(size=(6, 4))
    np.testing.assert_array_equal(softmax(a), np.array([softmax(row) for row in a]))


@pytest.mark.parametrize("a", [[1010.0, 1000.0, 990.0], [-1010.0, -1000.0, -990.0], [[1e308, 0.0], [5.0, 1e3]]])
def test_softmax_subtracts_max_and_never_overflows(a):
    with np.errstate(over="raise", invalid="raise"):  # underflow to 0 is fine
        y = softmax(a)
    shifted = np.asarray(a) - np.max(a, axis=-1, keepdims=True)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, ref_softmax(shifted).reshape(y.shape), rtol=1e-12)


def test_sigmoid_and_its_gradient_match_cosh_form():
    x = np.linspace(-30, 30, 601)
    s = 0.5 * np.exp(x / 2) / np.cosh(x / 2)  # e^(x/2) / (e^(x/2) + e^(-x/2)), no cancellation anywhere
    np.testing.assert_allclose(sigmoid(x), s, rtol=1e-12, atol=1e-300)
    # (1 - s) * s loses digits to cancellation once s is near 1: absolute, not relative, agreement there.
    np.testing.assert_allclose(sigmoid_grad(x), 0.25 / np.cosh(x / 2) ** 2, rtol=1e-9, atol=np.finfo(float).eps)


def test_sum_squared_error_matches_loop():
    rng = np.random.default_rng(2)
    y, t = rng.random(10), rng.random(10)
    expected = 0.5 * math.fsum((a - b) ** 2 for a, b in zip(y, t, strict=True))
    assert sum_squared_error(y, t) == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize(("n", "c"), [(1, 10), (5, 10), (32, 3), (4, 2)])
def test_cross_entropy_matches_formula_for_labels_and_one_hot(n, c):
    rng = np.random.default_rng(n * 100 + c)
    y, labels = random_probabilities(rng, n, c), rng.integers(0, c, n)
    expected = ref_cross_entropy(y, labels)
    assert cross_entropy_error(y, labels) == pytest.approx(expected, rel=1e-12)
    assert cross_entropy_error(y, np.eye(c)[labels]) == pytest.approx(expected, rel=1e-12)


def test_cross_entropy_is_the_batch_mean():
    rng = np.random.default_rng(3)
    y, labels = random_probabilities(rng, 8, 10), rng.integers(0, 10, 8)
    per_sample = [cross_entropy_error(row, label) for row, label in zip(y, labels, strict=True)]
    assert cross_entropy_error(y, labels) == pytest.approx(np.mean(per_sample), rel=1e-12)


def test_cross_entropy_1d_equals_one_row_batch():
    y = np.array(BOOK_Y)
    assert cross_entropy_error(y, 2) == cross_entropy_error(y[None, :], [2]) == cross_entropy_error(y, BOOK_T)


def test_cross_entropy_of_zero_probability_is_finite():
    # The 1e-7 inside the log: -log(1e-7) instead of inf.
    assert cross_entropy_error([1.0, 0.0], 1) == pytest.approx(-math.log(1e-7), rel=1e-12)


# --- bad input --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("fn", "y", "t", "match"),
    [
        (sum_squared_error, np.zeros(10), np.zeros(9), r"\(10,\).*\(9,\)"),
        (sum_squared_error, np.zeros((2, 3)), np.zeros((3, 2)), r"\(2, 3\).*\(3, 2\)"),
        (cross_entropy_error, np.full((2, 3), 1 / 3), np.zeros((3, 2)), r"\(3, 2\).*\(2, 3\)"),
        (cross_entropy_error, np.full((2, 3), 1 / 3), [0, 1, 2], r"\(2,\).*\(3,\)"),
        (cross_entropy_error, np.full((2, 2, 2), 0.5), [0, 1], r"\(2, 2, 2\)"),
        (cross_entropy_error, np.full((2, 3), 1 / 3), [0, 3], r"\[0, 2\]"),
        (cross_entropy_error, np.full((2, 3), 1 / 3), [-1, 0], r"\[0, 2\]"),
        (cross_entropy_error, np.full(10, 0.1), 10, r"\[0, 9\]"),
        (cross_entropy_error, np.full((2, 3), 1 / 3), [0.5, 1.0], "integer"),
    ],
)
def test_bad_input_raises_value_error_naming_it(fn, y, t, match):
    with pytest.raises(ValueError, match=match):
        fn(y, t)
