"""Engine test fixtures: real data found the way users find it, and every kernel of `numerical`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from zdl.datasets import DatasetError, load_mnist
from zdl.engine import budget
from zdl.engine.kernel import COMPILED, IMPLEMENTATIONS, numba_importable


def _load(dataset: str):
    """`load_mnist` as a user calls it ($ZDL_DATA_DIR, the cache, Debian's Fashion-MNIST, a download)."""
    try:
        return load_mnist(dataset=dataset)
    except DatasetError as exc:
        pytest.skip(f"no {dataset} found by zdl.datasets.load_mnist (set ZDL_DATA_DIR): {exc}")


@pytest.fixture(scope="session")
def mnist_small():
    """Real MNIST digits, normalized float32 ((x_train, t_train), (x_test, t_test))."""
    return _load("mnist")


@pytest.fixture(scope="session")
def fashion():
    """Real Fashion-MNIST (dense: about half the pixels are non-zero)."""
    return _load("fashion-mnist")


@pytest.fixture(params=IMPLEMENTATIONS)
def kernel(request) -> str:
    """Each kernel of `numerical` in turn."""
    if request.param in COMPILED and not numba_importable():
        pytest.skip("numba is not importable: the compiled kernel cannot be tested")
    return request.param


@pytest.fixture(scope="session")
def tiny_chunks():
    """A context manager (a function returning one): chunks of one or a few samples inside it."""
    return _tiny_chunks


@contextmanager
def _tiny_chunks() -> Iterator[None]:
    """Chunks of one or a few samples everywhere, so that small cases take the multi-chunk paths."""
    saved = {name: getattr(budget, name) for name in
             ("KERNEL_PAIR_UNITS", "MAX_CHUNK_ENTRIES", "FORWARD_MULTIPLY_ADDS", "NUMPY_CHUNK_BYTES",
              "SERIES_PAIR_UNITS", "CLOSED_FORM_ENTRY_UNITS")}
    budget.KERNEL_PAIR_UNITS, budget.MAX_CHUNK_ENTRIES, budget.FORWARD_MULTIPLY_ADDS = 50, 40, 100
    budget.SERIES_PAIR_UNITS, budget.CLOSED_FORM_ENTRY_UNITS = 20, 50
    budget.NUMPY_CHUNK_BYTES = 20_000
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(budget, name, value)
