"""How much one gradient call may hold and how long it may run between two `check()` calls.

The engine cuts its work into chunks of samples (and of hidden units, entries) so that one call's extra
memory over its inputs stays under MEMORY_BUDGET for every shape the service admits (input 784, output
10, hidden up to 1024, batch up to 10,000, dense inputs), and so that a caller's `check` runs often
(about every 10 to 50 ms of one core on the machine these were tuned on; the limit is 0.1 s). Chunk
sizes depend on the shapes only, and every entry's arithmetic and summation order is the same in any
chunk, so chunking never changes a result's bits.
"""

from __future__ import annotations

from collections.abc import Callable

#: Extra memory one call may hold, in bytes (the largest admitted call peaks well under it).
MEMORY_BUDGET = 256 * 2**20

#: (sample, value, hidden unit) evaluations per chunk of the compiled kernel: about 10 ms of one core.
KERNEL_PAIR_UNITS = 2_000_000

#: (sample, hidden unit) series coefficients per chunk of the closed form (four float64 each).
SERIES_PAIR_UNITS = 1 << 16

#: (sample, pixel, hidden unit) terms per chunk of the closed form: about 20 ms of one core.
CLOSED_FORM_ENTRY_UNITS = 1 << 25

#: (sample, pixel) entries per chunk of the compiled kernel's distinct pairs, at most (about 40 bytes each).
MAX_CHUNK_ENTRIES = 1 << 20

#: Multiply-adds per chunk of a forward pass (compiled or BLAS): a few ms of one core.
FORWARD_MULTIPLY_ADDS = 10_000_000

#: Bytes of the NumPy path's per-chunk work arrays (several of them exist at once).
NUMPY_CHUNK_BYTES = 16 * 2**20

Check = Callable[[], object]


def no_check() -> None:
    """The default `check`: never interrupts."""


def samples_per_chunk(work_per_sample: int, work_per_chunk: int) -> int:
    """How many samples make a chunk of about `work_per_chunk` (at least one)."""
    return max(1, work_per_chunk // max(1, work_per_sample))
