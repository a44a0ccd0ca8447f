"""What one training iteration costs: compute in core-seconds and the memory of one block group.

The service refuses jobs whose group memory exceeds a worker's or whose compute exceeds a limit, and
shows the estimate. The model follows the engine's actual work: for `numerical` in closed form, a
series per (sample, hidden unit) and a term per (sample, non-zero pixel, hidden unit); on the evaluated
kernels, distinct (sample, pixel value) pairs times hidden units (both plus a forward pass per block
group); for `numerical-reference`, two
full forward passes per weight; for backprop, about three forward passes. The per-dataset statistics
and the per-operation times are constants measured on the project's 2-core AMD EPYC VM (AVX-512,
NumPy 2.4, Numba 0.68; thread CPU time, medians); tests/zdl/engine/test_cost.py checks the estimates
against measured runs within a factor of 2. Other machines differ by a roughly constant factor, which
`zdl.engine.speed.machine_speed()` measures and `iteration_cost(..., speed=)` applies.
"""

from __future__ import annotations

from dataclasses import dataclass

from zdl.engine import budget
from zdl.engine.kernel import resolve_kernel

#: Per data set: mean non-zero pixels per sample, mean distinct non-zero values per sample (MNIST from
#: its 5,000-digit subset, Fashion-MNIST from 2,000 training images).
DATASET_STATS = {"mnist": (151.0, 65.5), "fashion-mnist": (388.0, 126.0)}

# Seconds per unit of work, measured as above.
_NUMBA_PAIR_UNIT = 3.0e-9  # per (sample, hidden unit) and (distinct value + 10): pairs, moments, logits
_NUMPY_PAIR_UNIT = 6.0e-8  # the same for the NumPy kernel
_NUMERICAL_CALL = 6.0e-4  # a numerical call's fixed part (blocks, pieces, chunks)
_SERIES_UNIT = 2.5e-8  # closed form: the series per (sample, hidden unit), W2's and b2's per class with it
_TERM_UNIT = 2.5e-10  # closed form: one (sample, non-zero pixel, hidden unit) term added
_FORWARD_MAC = 3.0e-10  # the compiled forward pass per non-zero pixel and hidden unit
_FORWARD_UNIT = 6.0e-9  # and per sample and hidden unit (sigmoid, second layer)
_REFERENCE_MAC = 7.7e-11  # BLAS forward pass per multiply-add, one thread
_REFERENCE_ENTRY = 9.0e-5  # fixed part of one entry (two loss evaluations)
_BACKPROP_MAC = 1.2e-10  # per sample, hidden unit and (input + output)
_BACKPROP_CALL = 3.0e-4
_EVALUATION_MAC = 5.0e-11  # predict per multiply-add (one BLAS thread)


@dataclass(frozen=True)
class MachineSpeed:
    """This machine's time over the cost model's reference machine, for two kinds of work that do not scale
    together from one CPU to another: the engine's kernels (and Python around them), and NumPy's BLAS work
    (evaluations, the reference's forward passes, backprop whole)."""

    kernel: float = 1.0
    blas: float = 1.0


#: The reference machine itself: estimates in its core-seconds.
REFERENCE = MachineSpeed()


@dataclass(frozen=True)
class IterationCost:
    """The estimate for one training iteration of one job."""

    compute_core_seconds: float  # gradient of one iteration, all block groups together, one core each
    group_memory_bytes: int  # peak extra memory of the largest block group's call
    evaluation_core_seconds_per_sample: float  # a forward pass (accuracy) per sample evaluated


def iteration_cost(
    input_size: int,
    hidden_size: int,
    output_size: int,
    batch_size: int,
    method: str,
    dataset: str = "mnist",
    n_groups: int = 1,
    kernel: str | None = None,
    speed: MachineSpeed = REFERENCE,
) -> IterationCost:
    """Estimate one iteration's gradient compute and one block group's memory (see the module doc).

    speed: this machine's time over the constants' machine (`zdl.engine.speed.machine_speed()`); the
    default gives the latter's core-seconds."""
    if dataset not in DATASET_STATS:
        raise ValueError(f"iteration_cost: dataset must be one of {list(DATASET_STATS)}, got {dataset!r}")
    if min(input_size, hidden_size, output_size, batch_size, n_groups) < 1:
        raise ValueError("iteration_cost: sizes, batch_size and n_groups must be positive")
    i, h, c, n = input_size, hidden_size, output_size, batch_size
    nonzero, distinct = (min(float(i), v) for v in DATASET_STATS[dataset])
    units = -(-h // min(n_groups, h))  # the largest group's hidden units
    if method == "numerical":
        chosen = resolve_kernel(kernel)
        forward = n * h * (nonzero * _FORWARD_MAC + _FORWARD_UNIT)
        if chosen == "closed-form":
            work = n * h * (_SERIES_UNIT + _TERM_UNIT * (nonzero + 1))
        else:
            work = (_NUMBA_PAIR_UNIT if chosen == "numba" else _NUMPY_PAIR_UNIT) * n * h * (distinct + 10)
        seconds = speed.kernel * (n_groups * (_NUMERICAL_CALL + forward) + work)
        memory = _numerical_memory(i, h, c, n, units, chosen)
    elif method == "numerical-reference":
        entries = i * h + h + h * c + c
        seconds = entries * (speed.kernel * _REFERENCE_ENTRY + speed.blas * _REFERENCE_MAC * n * h * (i + c))
        chunk = min(n, budget.samples_per_chunk(32 * max(h, c), budget.NUMPY_CHUNK_BYTES))
        memory = 8 * (i * h + h * c + 2 * n * i) + 32 * chunk * max(h, c)
    elif method == "backprop":
        seconds = speed.blas * (_BACKPROP_CALL + _BACKPROP_MAC * n * h * (i + c))  # NumPy and BLAS only
        chunk = min(n, budget.samples_per_chunk(64 * max(i, h, c), budget.NUMPY_CHUNK_BYTES))
        memory = 8 * 2 * (i * h + h * c + n * i) + 64 * chunk * max(i, h, c)
    else:
        raise ValueError(f"iteration_cost: unknown method {method!r}")
    return IterationCost(seconds, int(memory), speed.blas * _EVALUATION_MAC * h * (i + c))


def _numerical_memory(i: int, h: int, c: int, n: int, units: int, kernel: str) -> float:
    """Bytes: the batch as float64, the forward pass, and the chunked work of one group."""
    forward = 8 * (n * i + n * h + 3 * n * c)
    rows = i + 1
    if kernel == "closed-form":  # accumulators; each chunk's entries (row, value) and series (c1 .. c7, ok)
        chunk = min(n, budget.samples_per_chunk(rows * units, budget.CLOSED_FORM_ENTRY_UNITS),
                    budget.samples_per_chunk(rows, budget.MAX_CHUNK_ENTRIES),
                    budget.samples_per_chunk(units, budget.SERIES_PAIR_UNITS))
        return forward + 8 * 6 * rows * units + 40 * chunk * rows + 40 * chunk * units
    if kernel == "numba":
        chunk = min(n, budget.samples_per_chunk(rows * units, budget.KERNEL_PAIR_UNITS),
                    budget.samples_per_chunk(rows, budget.MAX_CHUNK_ENTRIES))
        return forward + 8 * 6 * rows * units + 40 * chunk * rows
    return forward + 8 * 6 * rows * units + 2 * budget.NUMPY_CHUNK_BYTES
