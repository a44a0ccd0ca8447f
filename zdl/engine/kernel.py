"""Which implementation `numerical` runs on: the closed form or the evaluated kernel (both compiled with
Numba), or the NumPy reference of the evaluated one.

`ZDL_KERNEL=auto` (the default) picks "closed-form" where Numba imports, else "numpy"; "closed-form",
"numba" (the evaluated compiled kernel) or "numpy" forces one. All compute the same central differences:
the evaluated kernels from the loss at +-h with the same identities, the closed form from the loss's power
series (`closed_form`, which falls back to the evaluated kernel past its bound). They differ in the last
bits (different exp and log, different order of operations), agreeing to far below the 1e-9 the engine
promises; each is deterministic on its own, whatever the blocks, threads or processes.

The kernels compile once per machine and are cached on disk by Numba (beside the package, or where
that is read-only in Numba's user cache dir, or in $NUMBA_CACHE_DIR). `zdl.engine.warmup.warm_up()`
compiles or loads them with tiny inputs, so that no timed step pays for it.
"""

from __future__ import annotations

import os
from functools import cache

#: What `numerical` can run on: the closed form, the evaluated compiled kernel, the NumPy reference of the latter.
IMPLEMENTATIONS = ("closed-form", "numba", "numpy")
KERNELS = ("auto", *IMPLEMENTATIONS)

#: The kernels that Numba compiles.
COMPILED = ("closed-form", "numba")


@cache
def numba_importable() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_kernel(kernel: str | None = None) -> str:
    """"closed-form", "numba" or "numpy" for `kernel` (default: $ZDL_KERNEL, else "auto"), or a ValueError."""
    choice = (kernel if kernel is not None else os.environ.get("ZDL_KERNEL", "auto")).strip().lower() or "auto"
    if choice not in KERNELS:
        raise ValueError(f"kernel must be one of {list(KERNELS)} (ZDL_KERNEL), got {choice!r}")
    if choice == "auto":
        return "closed-form" if numba_importable() else "numpy"
    if choice in COMPILED and not numba_importable():
        raise ValueError(f"kernel {choice!r} was asked for (ZDL_KERNEL={choice}) but numba cannot be imported")
    return choice


def kernel_name() -> str:
    """The kernel `numerical` uses now: "closed-form", "numba" or "numpy"."""
    return resolve_kernel()
