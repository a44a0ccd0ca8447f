"""Which implementation `numerical` runs on: the compiled kernels (Numba) or the NumPy reference.

`ZDL_KERNEL=auto` (the default) picks "numba" where Numba imports, else "numpy"; "numba" or "numpy"
forces one. Both compute the same central differences with the same identities; they differ in the last
bits (different exp and log, and the compiled forward pass sums in its own fixed order, not BLAS's),
agreeing to far below the 1e-9 the engine promises. Each is deterministic on its own.

The kernels compile once per machine and are cached on disk by Numba (beside the package, or where
that is read-only in Numba's user cache dir, or in $NUMBA_CACHE_DIR). `zdl.engine.warmup.warm_up()`
compiles or loads them with tiny inputs, so that no timed step pays for it.
"""

from __future__ import annotations

import os
from functools import cache

KERNELS = ("auto", "numba", "numpy")


@cache
def numba_importable() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_kernel(kernel: str | None = None) -> str:
    """"numba" or "numpy" for `kernel` (default: $ZDL_KERNEL, else "auto"), or a ValueError naming it."""
    choice = (kernel if kernel is not None else os.environ.get("ZDL_KERNEL", "auto")).strip().lower() or "auto"
    if choice not in KERNELS:
        raise ValueError(f"kernel must be one of {list(KERNELS)} (ZDL_KERNEL), got {choice!r}")
    if choice == "auto":
        return "numba" if numba_importable() else "numpy"
    if choice == "numba" and not numba_importable():
        raise ValueError("kernel 'numba' was asked for (ZDL_KERNEL=numba) but numba cannot be imported")
    return choice


def kernel_name() -> str:
    """The kernel `numerical` uses now: "numba" or "numpy"."""
    return resolve_kernel()
