"""zdl.split_dot: a product in two halves at once has the bits of one single-threaded np.dot, on any core count."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from zdl import split_dot as module
from zdl.engine.threads import single_threaded_blas
from zdl.split_dot import MIN_MULTIPLY_ADDS, split_dot


def pixels(rows: int, seed: int) -> np.ndarray:
    """MNIST-like float64 inputs: 81% zeros, the rest k/255."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random((rows, 784)) < 0.19, rng.integers(1, 256, (rows, 784)) / 255.0, 0.0)


def cases(seed: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The training loop's products (x @ W1, x.T @ da1 with x.T a transposed view) and awkward shapes."""
    rng = np.random.default_rng(seed)
    x = pixels(100, seed)
    return [
        ("x @ W1", x, rng.normal(size=(784, 50)) * 0.01),
        ("x.T @ da1", x.T, rng.normal(size=(100, 50)) * 1e-3),
        ("odd rows", pixels(101, seed), rng.normal(size=(784, 30))),
        ("1000 rows", pixels(1000, seed), rng.normal(size=(784, 50))),
        ("x.T @ da1 of 1000 samples", pixels(1000, seed).T, rng.normal(size=(1000, 50)) * 1e-3),
        ("small: not split", x[:3], rng.normal(size=(784, 5))),
        ("one row", x[:1], rng.normal(size=(784, 2000))),
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cores", [1, 2])
def test_same_bits_as_one_single_threaded_dot(monkeypatch: pytest.MonkeyPatch, seed: int, cores: int) -> None:
    monkeypatch.setattr(module, "_cores", lambda: cores)
    with single_threaded_blas():
        for name, a, b in cases(seed):
            product = split_dot(a, b)
            assert product.shape == (a.shape[0], b.shape[1]) and product.flags.c_contiguous, name
            assert product.tobytes() == np.dot(a, b).tobytes(), name


def test_the_evaluations_products_are_split_and_a_batchs_are_not() -> None:
    assert 5000 * 784 * 50 >= MIN_MULTIPLY_ADDS > 100 * 784 * 50  # an accuracy's x @ W1; a batch's
    assert any(a.shape[0] * a.shape[1] * b.shape[1] >= MIN_MULTIPLY_ADDS for _, a, b in cases(0))  # tested above


def test_a_failure_is_raised_and_the_next_product_still_works() -> None:
    a, b = pixels(1000, 0), np.ones((783, 50))  # inner sizes 784 and 783 do not match (a split product)
    with single_threaded_blas():
        with pytest.raises(ValueError, match="not aligned"):
            split_dot(a, b)
        good = np.ones((784, 50))
        assert split_dot(a, good).tobytes() == np.dot(a, good).tobytes()


def split_case(seed: int) -> tuple[str, np.ndarray, np.ndarray]:
    """A product large enough to go through the helper thread."""
    name, a, b = next(case for case in cases(seed) if case[0] == "1000 rows")
    assert a.shape[0] * a.shape[1] * b.shape[1] >= MIN_MULTIPLY_ADDS
    return name, a, b


def product_in_child(seed: int) -> bytes:
    with single_threaded_blas():
        _, a, b = split_case(seed)
        return split_dot(a, b).tobytes()


def test_a_forked_process_gets_its_own_helper() -> None:
    """A Celery pool process is forked from a parent that may have used split_dot: the parent's helper thread
    does not exist in the child, so the child must start its own instead of waiting for it forever."""
    with single_threaded_blas():
        _, a, b = split_case(0)
        expected = split_dot(a, b).tobytes()  # the parent's helper exists now
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply_async(product_in_child, (0,)).get(timeout=60) == expected
