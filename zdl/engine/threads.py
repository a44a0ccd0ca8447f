"""Single-threaded BLAS for the gradient's matrix products.

OpenBLAS splits a matrix product differently with a different number of threads, and the last bit of
x @ W1 changes with it. Gradients must be identical in the main process, in N local workers and in
Celery workers, so every product that feeds a gradient runs on one BLAS thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from threadpoolctl import ThreadpoolController


@cache
def _controller() -> ThreadpoolController:
    return ThreadpoolController()  # created after numpy has loaded its BLAS


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    with _controller().limit(limits=1, user_api="blas"):
        yield
