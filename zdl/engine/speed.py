"""How fast this machine runs the engine, relative to the machine the cost model's constants come from.

`zdl.engine.cost` counts work (pairs times hidden units, multiply-adds) and turns it into core-seconds
with constants measured on one machine. Another machine does the same work faster or slower by a
roughly constant factor (the project's 2-core Intel Xeon VMs took about 2.2 times the AMD EPYC VM's
time for the compiled and the NumPy kernels), so admission limits and expected wall
times would be off by that factor. `machine_speed()` measures it once per process: the median thread
time of a book-shaped `numerical` gradient (784-50-10, batch 100, digits with MNIST's statistics)
divided by what the model predicts for it, and the same for BLAS products (an evaluation's forward
pass), which on that Intel VM take about the reference machine's time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import cache

import numpy as np
from numpy.typing import NDArray

from zdl.engine.cost import DATASET_STATS, MachineSpeed, iteration_cost
from zdl.engine.kernel import resolve_kernel
from zdl.engine.warmup import warm_up

#: A measured factor outside this range means a probe disturbed by something else (or a broken kernel):
#: estimates stay within it.
SPEED_RANGE = (0.1, 10.0)

_REPEATS = 5


def probe_batch(batch: int = 100, input_size: int = 784, seed: int = 0) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Synthetic digits with MNIST's statistics (non-zero pixels and distinct values per sample), and labels."""
    rng = np.random.default_rng(seed)
    nonzero, distinct = (int(round(v)) for v in DATASET_STATS["mnist"])
    x = np.zeros((batch, input_size))
    for row in x:
        values = rng.choice(np.arange(1, 256), size=distinct, replace=False) / 255
        pixels = rng.choice(input_size, size=nonzero, replace=False)
        row[pixels] = np.concatenate([values, rng.choice(values, size=nonzero - distinct)])
    return x, rng.integers(0, 10, size=batch).astype(np.intp)


@cache
def machine_speed(kernel: str | None = None) -> MachineSpeed:
    """This machine's speed factors (2.0: it takes twice the reference machine's time), each the median
    thread time of a probe over what the model predicts for it; measured once per process, in about 0.1 s."""
    kernel = resolve_kernel(kernel)
    return MachineSpeed(_factor(_kernel_probe(kernel) / _kernel_predicted(kernel)),
                        _factor(_blas_probe() / _blas_predicted()))


def _factor(ratio: float) -> float:
    low, high = SPEED_RANGE
    return min(max(ratio, low), high)


def median_thread_time(call: Callable[[], object], repeats: int = _REPEATS) -> float:
    """The median thread CPU time of `repeats` calls, after one that warms the caches (its thread's time
    only: what a probe or a measured block costs one core, whatever else the machine runs)."""
    call()  # caches warm
    times = []
    for _ in range(repeats):
        began = time.thread_time()
        call()
        times.append(time.thread_time() - began)
    return statistics.median(times)


def _kernel_probe(kernel: str) -> float:
    """A book-shaped `numerical` gradient."""
    from zdl.engine.compute import gradient

    warm_up(kernel)
    x, labels = probe_batch()
    params = _params(50)
    return median_thread_time(lambda: gradient(params, x, labels, kernel=kernel))


def _kernel_predicted(kernel: str) -> float:
    return iteration_cost(784, 50, 10, 100, "numerical", "mnist", kernel=kernel).compute_core_seconds


_BLAS_SAMPLES, _BLAS_HIDDEN = 2000, 100


def _blas_probe() -> float:
    """Predicting 2,000 digits with a 784-100-10 network on one BLAS thread (what an evaluation does)."""
    from zdl.engine.threads import single_threaded_blas
    from zdl.nets import count_correct

    x, _ = probe_batch(_BLAS_SAMPLES)
    labels = np.zeros(_BLAS_SAMPLES, dtype=np.intp)
    params = _params(_BLAS_HIDDEN)
    with single_threaded_blas():
        return median_thread_time(lambda: count_correct(params, x, labels))


def _blas_predicted() -> float:
    cost = iteration_cost(784, _BLAS_HIDDEN, 10, 100, "backprop")
    return cost.evaluation_core_seconds_per_sample * _BLAS_SAMPLES


def _params(hidden: int) -> dict[str, NDArray[np.float64]]:
    rng = np.random.default_rng(1)
    return {"W1": rng.normal(0, 0.01, (784, hidden)), "b1": np.zeros(hidden),
            "W2": rng.normal(0, 0.01, (hidden, 10)), "b2": np.zeros(10)}
